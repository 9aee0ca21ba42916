"""VolumeDataset (NIfTI / .npy / .npz volumes) and SyntheticVolumeDataset."""
import os
import sys

import numpy as np
import pytest

from toolbox.errors import DataError
from toolbox.registry import DATASETS

PIPELINE = [dict(type="LoadVolume"), dict(type="PackSegInputs")]
CLASSES = ("background", "organ", "lesion")


def labels_of(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.uint8)


@pytest.fixture
def vol_root(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    img = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    np.save(tmp_path / "imagesTr" / "case1.npy", img)
    np.save(tmp_path / "labelsTr" / "case1.npy", labels_of((4, 5, 6)))
    np.savez(tmp_path / "imagesTr" / "case2.npz", image=np.ones((2, 3, 4, 5), np.float32))
    np.savez(tmp_path / "labelsTr" / "case2.npz", label=labels_of((1, 3, 4, 5), 1))
    return tmp_path


def build(root, **kw):
    cfg = dict(type="VolumeDataset", data_root=str(root), img_dir="imagesTr",
               label_dir="labelsTr", classes=CLASSES, pipeline=PIPELINE)
    cfg.update(kw)
    return DATASETS.build(cfg)


def test_npy_and_npz_volumes(vol_root):
    ds = build(vol_root)
    assert [r["img_id"] for r in ds.data_list] == ["case1", "case2"]
    a, b = ds[0], ds[1]
    assert a["inputs"].shape == (1, 4, 5, 6) and b["inputs"].shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(a["inputs"][0].numpy(), np.arange(120).reshape(4, 5, 6))
    np.testing.assert_array_equal(a["data_samples"].gt_sem_seg.numpy(), labels_of((4, 5, 6)))
    assert b["data_samples"].ori_gt_sem_seg.shape == (3, 4, 5)
    assert a["data_samples"].metainfo["ori_shape"] == (4, 5, 6)
    counts = np.bincount(labels_of((4, 5, 6)).ravel(), minlength=3) + \
        np.bincount(labels_of((1, 3, 4, 5), 1).ravel(), minlength=3)
    assert ds.class_frequencies()["instance_counts"] == counts.tolist()


def test_nifti_axes_and_spacing(tmp_path):
    import nibabel as nib  # the medical extra, part of the test extra
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    xyz = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)  # (x, y, z)
    lab = labels_of((6, 5, 4))
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    nib.save(nib.Nifti1Image(xyz, affine), str(tmp_path / "img" / "p.nii.gz"))
    nib.save(nib.Nifti1Image(lab, affine), str(tmp_path / "lab" / "p.nii.gz"))
    ds = build(tmp_path, img_dir="img", label_dir="lab")
    item = ds[0]
    np.testing.assert_allclose(item["inputs"][0].numpy(), xyz.transpose(2, 1, 0))
    np.testing.assert_array_equal(item["data_samples"].gt_sem_seg.numpy(), lab.transpose(2, 1, 0))
    assert item["data_samples"].metainfo["spacing"] == pytest.approx((2.5, 0.9, 0.8))


def test_nifti_without_nibabel_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    (tmp_path / "img" / "p.nii.gz").write_bytes(b"x")
    (tmp_path / "lab" / "p.nii.gz").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(DataError, match=r"p\.nii\.gz needs nibabel"):
        build(tmp_path, img_dir="img", label_dir="lab")[0]


def test_wrong_dimensions_name_the_file(vol_root):
    np.save(vol_root / "imagesTr" / "flat.npy", np.zeros((4, 5), np.float32))
    np.save(vol_root / "labelsTr" / "flat.npy", np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match=r"flat\.npy must be 3D .* got 2 dimensions"):
        build(vol_root, split_file=None)[2]
    np.save(vol_root / "imagesTr" / "flat.npy", np.zeros((4, 5, 6), np.float32))
    with pytest.raises(DataError, match=r"label volume .*flat\.npy must be 3D"):
        build(vol_root)[2]


def test_shape_mismatch_and_bad_labels_name_the_files(vol_root):
    np.save(vol_root / "imagesTr" / "odd.npy", np.zeros((4, 5, 6), np.float32))
    np.save(vol_root / "labelsTr" / "odd.npy", np.zeros((4, 5, 7), np.uint8))
    with pytest.raises(DataError, match=r"labelsTr/odd\.npy has shape \(4, 5, 7\) but its "
                                        r"image .*imagesTr/odd\.npy has spatial shape"):
        build(vol_root)[2]
    np.save(vol_root / "labelsTr" / "odd.npy", np.full((4, 5, 6), 7, np.uint8))
    with pytest.raises(DataError, match=r"odd\.npy has label\(s\) \[7\] outside \[0, 3\)"):
        build(vol_root)[2]
    np.save(vol_root / "labelsTr" / "odd.npy", np.full((4, 5, 6), 255, np.uint8))
    assert (build(vol_root)[2]["data_samples"].gt_sem_seg == 255).all()  # ignore is fine


def test_missing_label_and_split(vol_root):
    os.remove(vol_root / "labelsTr" / "case2.npz")
    with pytest.raises(DataError, match=r"case2\.npz has no label volume 'case2"):
        build(vol_root)
    assert len(build(vol_root, label_dir=None)) == 2  # unlabelled (inference)
    (vol_root / "split.txt").write_text("case1\nghost\n")
    with pytest.raises(DataError, match=r"'ghost' listed in .*split\.txt"):
        build(vol_root, split_file="split.txt")


def test_synthetic_volumes_deterministic_imbalanced_learnable(tmp_path):
    kw = dict(type="SyntheticVolumeDataset", split="val", num_volumes=3, size=32,
              pipeline=PIPELINE)
    ds = DATASETS.build(dict(kw, data_root=str(tmp_path / "a")))
    assert ds.metainfo["classes"] == ("background", "liver", "spleen", "kidney", "tumor")
    again = DATASETS.build(dict(kw, data_root=str(tmp_path / "b")))
    images, labels = [], []
    for i in range(3):
        x, y = ds[i], again[i]
        assert x["inputs"].shape == (1, 32, 32, 32)
        assert (x["inputs"] == y["inputs"]).all()  # same parameters, same volumes
        assert (x["data_samples"].gt_sem_seg == y["data_samples"].gt_sem_seg).all()
        images.append(x["inputs"][0].numpy())
        labels.append(x["data_samples"].gt_sem_seg.numpy())
    img, lab = np.stack(images), np.stack(labels)
    counts = np.bincount(lab.ravel(), minlength=5)
    assert counts[0] > counts[1] > counts[2] > counts[4]  # a big organ, small ones
    assert counts[2] > 0 and counts[3] > 0
    means = [img[lab == c].mean() for c in (1, 2, 3)]
    assert means[2] > means[0] > means[1]  # kidney > liver > spleen in HU
    assert abs(means[0] - means[1]) < 2 * img[lab == 1].std()  # not separable by a threshold
    cached = os.path.join(str(tmp_path / "a"), "val", "images", "val_000.npy")
    mtime = os.path.getmtime(cached)
    DATASETS.build(dict(kw, data_root=str(tmp_path / "a")))  # reuses the files
    assert os.path.getmtime(cached) == mtime
    with pytest.raises(DataError, match="other parameters"):
        DATASETS.build(dict(kw, data_root=str(tmp_path / "a"), seed=1))
