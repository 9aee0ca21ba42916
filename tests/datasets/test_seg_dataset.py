"""SegDataset (image folder + PNG label maps) and SyntheticSegDataset."""
import os

import cv2
import numpy as np
import pytest

from toolbox.errors import DataError
from toolbox.registry import DATASETS

PIPELINE = [dict(type="LoadImage"), dict(type="LoadSegAnnotation"), dict(type="PackSegInputs")]
CLASSES = ("background", "road", "car")


def write_pair(root, name, seg, img_hw=None):
    seg = np.asarray(seg)
    h, w = img_hw or seg.shape
    os.makedirs(root / "img", exist_ok=True)
    os.makedirs(root / "ann", exist_ok=True)
    assert cv2.imwrite(str(root / "img" / f"{name}.jpg"), np.full((h, w, 3), 90, np.uint8))
    assert cv2.imwrite(str(root / "ann" / f"{name}.png"), np.asarray(seg, np.uint8))


@pytest.fixture
def seg_root(tmp_path):
    write_pair(tmp_path, "a", [[0, 1, 1, 2], [0, 0, 255, 2], [1, 1, 1, 1]])
    write_pair(tmp_path, "b", [[2, 2], [2, 0]])
    write_pair(tmp_path, "c", [[0, 0], [0, 0]])
    (tmp_path / "train.txt").write_text("a\n# a comment\nb\n\n")
    return tmp_path


def build(root, **kw):
    cfg = dict(type="SegDataset", data_root=str(root), img_dir="img", seg_map_dir="ann",
               classes=CLASSES, pipeline=PIPELINE)
    cfg.update(kw)
    return DATASETS.build(cfg)


def test_reads_split_and_packs(seg_root):
    ds = build(seg_root, split_file="train.txt")
    assert len(ds) == 2 and ds.metainfo["classes"] == CLASSES
    item = ds[0]
    sample = item["data_samples"]
    assert item["inputs"].shape == (3, 3, 4)
    np.testing.assert_array_equal(sample.gt_sem_seg.numpy(),
                                  [[0, 1, 1, 2], [0, 0, 255, 2], [1, 1, 1, 1]])
    assert sample.ori_gt_sem_seg.shape == (3, 4)
    assert sample.metainfo["img_id"] == "a" and sample.metainfo["ori_shape"] == (3, 4)
    assert len(build(seg_root)) == 3  # no split file: every image


def test_class_frequencies_count_pixels_and_images(seg_root):
    freqs = build(seg_root).class_frequencies()
    # hand count: a: 0 x3, 1 x6, 2 x2 (one 255); b: 0 x1, 2 x3; c: 0 x4
    assert freqs == dict(instance_counts=[8, 6, 5], image_counts=[3, 1, 2], num_images=3)


def test_reduce_zero_label(seg_root):
    ds = build(seg_root, split_file="train.txt", reduce_zero_label=True, classes=("road", "car"))
    np.testing.assert_array_equal(ds[1]["data_samples"].gt_sem_seg.numpy(), [[1, 1], [1, 255]])
    assert ds.class_frequencies()["instance_counts"] == [6, 5]


def test_label_out_of_range_names_the_file(seg_root):
    write_pair(seg_root, "bad", [[0, 3], [1, 1]])
    ds = build(seg_root)
    idx = [r["img_id"] for r in ds.data_list].index("bad")
    with pytest.raises(DataError, match=r"bad\.png.*\[3\].*outside \[0, 3\)"):
        ds[idx]


def test_size_mismatch_names_the_file(seg_root):
    write_pair(seg_root, "odd", np.zeros((2, 2)), img_hw=(3, 2))
    ds = build(seg_root)
    idx = [r["img_id"] for r in ds.data_list].index("odd")
    with pytest.raises(DataError, match=r"odd\.png is 2x2.*odd\.jpg is 3x2"):
        ds[idx]


def test_missing_files_and_bad_arguments(seg_root):
    os.remove(seg_root / "ann" / "b.png")
    with pytest.raises(DataError, match=r"label map of .*b\.jpg not found: .*b\.png"):
        build(seg_root, split_file="train.txt")
    with pytest.raises(DataError, match="classes"):
        build(seg_root, classes=None)
    with pytest.raises(DataError, match="image folder"):
        build(seg_root, img_dir="nope")
    cv2.imwrite(str(seg_root / "ann" / "b.png"), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match=r"b\.png must be single-channel"):
        build(seg_root, split_file="train.txt")[1]


def test_synthetic_seg_matches_the_coco_masks(tiny_synthetic):
    """The class PNGs agree with the independently written COCO polygons: every
    pixel of class k + 1 lies inside a (decoded) mask of shape class k."""
    seg = DATASETS.build(dict(type="SyntheticSegDataset", split="val", data_root=tiny_synthetic,
                              num_images=8, image_size=96, min_object_size=10,
                              pipeline=PIPELINE))
    coco = DATASETS.build(dict(type="SyntheticCocoDataset", split="val",
                               data_root=tiny_synthetic, num_images=8, image_size=96,
                               min_object_size=10, with_mask=True, filter_empty_gt=False))
    assert seg.metainfo["classes"][0] == "background"
    assert seg.metainfo["classes"][1:] == coco.metainfo["classes"]
    assert len(seg) == len(coco) == 8
    for i in range(3):
        labels = seg[i]["data_samples"].gt_sem_seg.numpy()
        assert labels.shape == (96, 96) and labels.max() < len(seg.metainfo["classes"])
        r = coco.prepare_results(i)
        assert os.path.basename(r["img_path"]) == os.path.basename(seg.data_list[i]["img_path"])
        covered = np.zeros((len(coco.metainfo["classes"]) + 1, 96, 96), bool)
        for mask, label in zip(r["gt_masks"], r["gt_labels"]):
            covered[label + 1] |= mask.astype(bool)
        fg = labels > 0
        assert fg.any()
        assert covered[labels[fg], np.nonzero(fg)[0], np.nonzero(fg)[1]].all()
