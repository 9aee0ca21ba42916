"""Segmentation transforms: the label map follows the image through every
geometric transform. Each test image encodes its label in the pixel values
(red = 10 * label + 5), so sync is checked by decoding the image."""
import random

import numpy as np
import pytest
import torch

from toolbox.datasets.transforms.base import init_geometry
from toolbox.registry import FUNCTIONS, TRANSFORMS
from toolbox.structures import SegDataSample


def encoded(h=40, w=60, num_classes=5, seed=0):
    """Blocky random labels and an image whose every channel encodes them."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, num_classes, (h // 4 + 1, w // 4 + 1))
    seg = np.kron(coarse, np.ones((4, 4), np.int64))[:h, :w]
    img = np.repeat((seg * 10 + 5).astype(np.uint8)[..., None], 3, axis=2)
    results = dict(img=img, img_path="x.png", gt_seg_map=seg.copy(), ori_gt_seg_map=seg.copy())
    return init_geometry(results)


def assert_in_sync(results, pad_val=0):
    img, seg = results["img"], results["gt_seg_map"]
    assert img.shape[:2] == seg.shape
    labelled = seg != 255
    np.testing.assert_array_equal(img[..., 0][labelled], (seg[labelled] * 10 + 5))
    assert (img[..., 0][~labelled] == pad_val).all()  # padding only where labels are 255


@pytest.mark.parametrize("scale, keep_ratio", [((30, 20), True), ((97, 33), False),
                                               ((120, 80), True)])
def test_resize_keeps_labels_in_sync_nearest(scale, keep_ratio):
    r = encoded()
    out = TRANSFORMS.build(dict(type="Resize", scale=scale, keep_ratio=keep_ratio,
                                interpolation="nearest"))(r)
    assert out["gt_seg_map"].shape == out["img_shape"] != (40, 60)
    assert out["gt_seg_map"].dtype == np.int64
    assert_in_sync(out)
    np.testing.assert_array_equal(out["ori_gt_seg_map"], encoded()["ori_gt_seg_map"])


def test_resize_bilinear_image_gives_nearest_labels():
    out = TRANSFORMS.build(dict(type="Resize", scale=(90, 60)))(encoded())
    assert set(np.unique(out["gt_seg_map"])) <= set(range(5))  # no interpolated labels


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_keeps_labels_in_sync(direction):
    r = encoded()
    seg0 = r["gt_seg_map"].copy()
    out = TRANSFORMS.build(dict(type="RandomFlip", prob=1.0, direction=direction))(r)
    assert_in_sync(out)
    expected = {"horizontal": seg0[:, ::-1], "vertical": seg0[::-1],
                "diagonal": seg0[::-1, ::-1]}[direction]
    np.testing.assert_array_equal(out["gt_seg_map"], expected)


def test_crop_keeps_labels_in_sync():
    random.seed(3)
    crop = TRANSFORMS.build(dict(type="RandomCrop", area_range=(0.2, 0.5)))
    r = encoded()
    seg0 = r["gt_seg_map"].copy()
    out = crop.crop(r, (7, 5, 37, 29))
    np.testing.assert_array_equal(out["gt_seg_map"], seg0[5:29, 7:37])
    assert_in_sync(out)
    for seed in range(5):  # random windows (no boxes: any window is accepted)
        random.seed(seed)
        out = crop(encoded())
        assert out["img_shape"] != (40, 60)
        assert_in_sync(out)


def test_pad_fills_labels_with_ignore_index():
    out = TRANSFORMS.build(dict(type="Pad", size_divisor=32))(encoded())
    assert out["gt_seg_map"].shape == (64, 64) == out["pad_shape"]
    assert (out["gt_seg_map"][40:] == 255).all() and (out["gt_seg_map"][:, 60:] == 255).all()
    assert_in_sync(out)


def test_chain_of_transforms_stays_in_sync():
    random.seed(0)
    pipeline = [dict(type="RandomCrop", area_range=(0.4, 0.9)),
                dict(type="Resize", scale=(50, 50), keep_ratio=False, interpolation="nearest"),
                dict(type="RandomFlip", prob=1.0, direction=["horizontal", "vertical"]),
                dict(type="Pad", size=(64, 72), size_divisor=None)]
    r = encoded()
    for cfg in pipeline:
        r = TRANSFORMS.build(cfg)(r)
        assert_in_sync(r)
    assert r["gt_seg_map"].shape == (64, 72)


def test_albu_geometric_transforms_keep_labels_in_sync():
    r = encoded(h=40, w=60)
    albu = TRANSFORMS.build(dict(type="Albu", transforms=[
        dict(type="HorizontalFlip", p=1.0),
        dict(type="PadIfNeeded", min_height=48, min_width=64, position="top_left",
             fill=0, fill_mask=255)]))
    out = albu(r)
    assert out["gt_seg_map"].shape == (48, 64)
    assert_in_sync(out)
    np.testing.assert_array_equal(out["gt_seg_map"][:40, :60], r["ori_gt_seg_map"][:, ::-1])


def test_detection_results_without_seg_map_are_untouched():
    r = encoded()
    del r["gt_seg_map"]
    out = TRANSFORMS.build(dict(type="Pad", size_divisor=32))(
        TRANSFORMS.build(dict(type="Resize", scale=(30, 20)))(r))
    assert "gt_seg_map" not in out


def test_load_seg_annotation_and_pack(tmp_path):
    import cv2
    seg = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), seg)
    r = dict(img=np.zeros((2, 3, 3), np.uint8), ori_shape=(2, 3), img_path="a.jpg",
             seg_map_path=str(tmp_path / "a.png"), num_classes=3)
    r = TRANSFORMS.build(dict(type="LoadSegAnnotation"))(init_geometry(r))
    np.testing.assert_array_equal(r["gt_seg_map"], seg)
    packed = TRANSFORMS.build(dict(type="PackSegInputs"))(r)
    sample = packed["data_samples"]
    assert isinstance(sample, SegDataSample)
    # uint8 images stay uint8 (the data preprocessor casts them on the device)
    assert packed["inputs"].shape == (3, 2, 3) and packed["inputs"].dtype == torch.uint8
    assert sample.gt_sem_seg.dtype == torch.long
    torch.testing.assert_close(sample.ori_gt_sem_seg, torch.as_tensor(seg, dtype=torch.long))
    assert sample.metainfo["seg_map_path"].endswith("a.png")
    # reduce_zero_label: 0 -> 255, k -> k - 1, 255 stays
    r["reduce_zero_label"] = True
    r = TRANSFORMS.build(dict(type="LoadSegAnnotation"))(r)
    np.testing.assert_array_equal(r["gt_seg_map"], [[255, 0, 1], [255, 0, 255]])


def volume_results(shape=(10, 12, 14), seed=0):
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 3, shape)
    seg[2:5, 3:6, 4:8] = 2
    img = (seg * 10 + 5).astype(np.float32)[None].repeat(2, 0)
    return dict(img=img, gt_seg_map=seg.copy(), ori_gt_seg_map=seg.copy(), img_path="v.npy",
                ori_shape=shape, img_shape=shape, crop_offset=(0.0, 0.0, 0.0))


def assert_volume_in_sync(r):
    img, seg = r["img"], r["gt_seg_map"]
    assert img.shape[1:] == seg.shape
    labelled = seg != 255
    np.testing.assert_array_equal(img[0][labelled], seg[labelled] * 10 + 5)
    np.testing.assert_array_equal(img[1], img[0])


def test_random_crop_volume_sync_offset_and_padding():
    random.seed(0)
    crop = TRANSFORMS.build(dict(type="RandomCropVolume", roi_size=(4, 5, 6), pos=0, neg=0))
    r = volume_results()
    seg0 = r["gt_seg_map"].copy()
    out = crop(r)
    assert out["img"].shape == (2, 4, 5, 6) and out["img_shape"] == (4, 5, 6)
    x, y, z = (int(v) for v in out["crop_offset"])
    np.testing.assert_array_equal(out["gt_seg_map"], seg0[z:z + 4, y:y + 5, x:x + 6])
    assert_volume_in_sync(out)
    small = TRANSFORMS.build(dict(type="RandomCropVolume", roi_size=(12, 12, 16)))(
        volume_results())
    assert small["img"].shape == (2, 12, 12, 16)
    assert (small["gt_seg_map"][10:] == 255).all() and (small["gt_seg_map"][:, :, 14:] == 255).all()
    assert_volume_in_sync(small)


def test_random_crop_volume_positive_sampling_hits_foreground():
    random.seed(1)
    seg = np.zeros((20, 20, 20), np.int64)
    seg[15:17, 2:4, 9:11] = 1  # a tiny organ
    r = dict(img=seg[None].astype(np.float32), gt_seg_map=seg)
    crop = TRANSFORMS.build(dict(type="RandomCropVolume", roi_size=6, pos=1, neg=0))
    assert all((crop(dict(r))["gt_seg_map"] == 1).any() for _ in range(10))
    neg_only = TRANSFORMS.build(dict(type="RandomCropVolume", roi_size=6, pos=0, neg=1))
    hits = sum((neg_only(dict(r))["gt_seg_map"] == 1).any() for _ in range(20))
    assert hits < 10


def test_random_crop_volume_class_ratios_follow_the_ratios():
    """Centres drawn by class_ratios hit each present class with its ratio's share."""
    random.seed(0)
    seg = np.zeros((10, 10, 10), np.int64)
    seg[1:6, 1:6, 1:6] = 1  # big organ (125 voxels)
    seg[8, 8, 8] = 2  # one voxel
    seg[1:3, 7:9, 7:9] = 3  # 8 voxels; class 4 is absent
    img = np.arange(seg.size, dtype=np.float32).reshape(1, *seg.shape)  # voxel index
    crop = TRANSFORMS.build(dict(type="RandomCropVolume", roi_size=1,
                                 class_ratios=(1, 2, 3, 4, 10)))
    n = 1500
    counts = np.zeros(5)
    for _ in range(n):
        out = crop(dict(img=img.copy(), gt_seg_map=seg.copy()))
        z, y, x = np.unravel_index(int(out["img"].item()), seg.shape)
        assert out["gt_seg_map"].item() == seg[z, y, x]  # a 1^3 patch is its centre
        counts[seg[z, y, x]] += 1
    # class 4 is absent: the others share the draws as 1 : 2 : 3 : 4 (out of 10)
    expected = np.array([1, 2, 3, 4, 0]) / 10
    assert counts[4] == 0
    np.testing.assert_allclose(counts / n, expected, atol=0.05)  # > 3.9 sigma at n = 1500
    with pytest.raises(ValueError, match="class_ratios"):
        TRANSFORMS.build(dict(type="RandomCropVolume", roi_size=4, class_ratios=(1, -1)))
    with pytest.raises(ValueError, match="class_ratios"):
        TRANSFORMS.build(dict(type="RandomCropVolume", roi_size=4, class_ratios=(0, 0)))


def test_random_flip_volume_sync_and_undo():
    random.seed(0)
    r = volume_results()
    seg0 = r["gt_seg_map"].copy()
    flip = TRANSFORMS.build(dict(type="RandomFlipVolume", prob=1.0, axes=(0, 2)))
    out = flip(r)
    assert out["flip"] and out["flip_axes"] == (0, 2)
    np.testing.assert_array_equal(out["gt_seg_map"], seg0[::-1, :, ::-1])
    assert_volume_in_sync(out)
    back = flip(out)
    assert not back["flip"] and back["flip_axes"] == ()
    np.testing.assert_array_equal(back["gt_seg_map"], seg0)


def test_scale_and_normalize_intensity():
    r = dict(img=np.array([[[[-1000.0, -175.0, 37.5, 250.0, 900.0]]]], np.float32))
    out = TRANSFORMS.build(dict(type="ScaleIntensity", a_min=-175, a_max=250, clip=True))(r)
    np.testing.assert_allclose(out["img"].ravel(), [0, 0, 0.5, 1, 1], atol=1e-6)
    v = np.zeros((2, 2, 2, 3), np.float32)
    v[0, 0, 0] = [1, 2, 3]
    v[1] = 7.0
    out = TRANSFORMS.build(dict(type="NormalizeIntensity", nonzero=True))(dict(img=v.copy()))
    np.testing.assert_allclose(out["img"][0, 0, 0], np.array([-1, 0, 1]) / np.std([1, 2, 3]),
                               atol=1e-6)
    assert (out["img"][0, 1] == 0).all() and (out["img"][1] == 0).all()  # constant: centred


def _seg_preprocessor(divisor):
    from toolbox.registry import MODELS
    return MODELS.build(dict(type="SegDataPreprocessor", pad_size_divisor=divisor))


def test_pack_volume_and_seg_collate_pads_with_ignore():
    pack = TRANSFORMS.build(dict(type="PackSegInputs"))
    a = pack(volume_results((6, 8, 10)))
    b = pack(volume_results((7, 8, 9), seed=1))
    assert a["inputs"].shape == (2, 6, 8, 10)
    assert a["data_samples"].metainfo["scale_factor"] == (1.0, 1.0, 1.0)
    listed = FUNCTIONS.get("toolbox.seg_collate")([a, b])
    assert [tuple(x.shape) for x in listed["inputs"]] == [(2, 6, 8, 10), (2, 7, 8, 9)]
    batch = _seg_preprocessor(4)(listed)  # the padding moved to the data preprocessor
    assert batch["inputs"].shape == (2, 2, 8, 8, 12)
    s0, s1 = batch["data_samples"]
    assert s0.metainfo["batch_input_shape"] == (8, 8, 12)
    assert s0.gt_sem_seg.shape == (8, 8, 12) and s1.gt_sem_seg.shape == (8, 8, 12)
    assert (s1.gt_sem_seg[7:] == 255).all() and (s1.gt_sem_seg[:, :, 9:] == 255).all()
    assert (batch["inputs"][1, :, 7:] == 0).all()
    torch.testing.assert_close(s1.gt_sem_seg[:7, :, :9],
                               torch.as_tensor(volume_results((7, 8, 9), seed=1)["gt_seg_map"]))
    assert s1.ori_gt_sem_seg.shape == (7, 8, 9)  # never padded


def test_seg_collate_2d_and_bad_input():
    pack = TRANSFORMS.build(dict(type="PackSegInputs"))
    items = [pack(encoded(30, 20)), pack(encoded(17, 33, seed=1))]
    batch = _seg_preprocessor(16)(FUNCTIONS.get("toolbox.seg_collate")(items))
    assert batch["inputs"].shape == (2, 3, 32, 48)
    assert batch["data_samples"][1].gt_sem_seg.shape == (32, 48)
    with pytest.raises(ValueError, match="size_divisor"):
        _seg_preprocessor(0)
    mixed = [items[0], pack(volume_results())]
    with pytest.raises(ValueError, match="item 1"):
        FUNCTIONS.get("toolbox.seg_collate")(mixed)
