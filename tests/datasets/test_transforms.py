"""The albumentations-based pipeline: geometry, sync of boxes/masks, mapping back."""
import random

import cv2
import numpy as np
import pytest
import torch

from toolbox.datasets.base import boxes_to_original
from toolbox.datasets.transforms.base import init_geometry
from toolbox.errors import ConfigArgumentError, UnknownComponentError
from toolbox.registry import TRANSFORMS


def make_results(h, w, boxes, labels=None, ignore=None, masks=True, seed=0):
    """A result dict as LoadImage leaves it; masks are the boxes' rectangles."""
    rng = np.random.default_rng(seed)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    results = dict(img=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), img_id=1,
                   img_path="x.jpg", gt_bboxes=boxes.copy(),
                   gt_labels=np.asarray(labels if labels is not None else range(n), np.int64),
                   gt_ignore_flags=np.asarray(ignore if ignore is not None else [False] * n, bool))
    if masks:
        m = np.zeros((n, h, w), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            m[i, y1:y2, x1:x2] = 1
        results["gt_masks"] = m
    results.update(ori_gt_bboxes=boxes.copy(), ori_gt_labels=results["gt_labels"].copy())
    return init_geometry(results)


def mask_boxes(masks):
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(out, np.float32).reshape(-1, 4)


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_twice_is_identity(direction):
    flip = TRANSFORMS.build(dict(type="RandomFlip", prob=1.0, direction=direction))
    r = make_results(40, 60, [[10, 5, 30, 25], [0, 0, 60, 40]])
    img0, boxes0, masks0 = r["img"].copy(), r["gt_bboxes"].copy(), r["gt_masks"].copy()
    once = flip(r)
    assert once["flip"] and once["flip_direction"] == direction
    # hand-worked: x -> 60 - x, y -> 40 - y
    expected = {"horizontal": [30, 5, 50, 25], "vertical": [10, 15, 30, 35],
                "diagonal": [30, 15, 50, 35]}[direction]
    np.testing.assert_allclose(once["gt_bboxes"][0], expected, atol=1e-4)
    np.testing.assert_allclose(mask_boxes(once["gt_masks"]), once["gt_bboxes"], atol=1e-3)
    twice = flip(once)
    assert not twice["flip"] and twice["flip_direction"] is None
    np.testing.assert_array_equal(twice["img"], img0)
    np.testing.assert_allclose(twice["gt_bboxes"], boxes0, atol=1e-4)
    np.testing.assert_array_equal(twice["gt_masks"], masks0)


@pytest.mark.parametrize("hw, scale, keep_ratio, new_hw", [
    ((240, 320), (1333, 800), True, (800, 1067)),   # factor min(1333/320, 800/240) = 10/3
    ((97, 131), (64, 64), True, (47, 64)),          # factor 64/131: 97 * 64/131 = 47.39
    ((97, 131), (50, 40), False, (40, 50)),         # stretched to exactly (w, h)
])
def test_resize_scale_factors(hw, scale, keep_ratio, new_hw):
    h, w = hw
    resize = TRANSFORMS.build(dict(type="Resize", scale=scale, keep_ratio=keep_ratio))
    r = resize(make_results(h, w, [[13, 7, 50, 40]]))
    nh, nw = new_hw
    assert r["img"].shape[:2] == (nh, nw) and r["img_shape"] == (nh, nw)
    assert r["gt_masks"].shape == (1, nh, nw)
    sx, sy = nw / w, nh / h
    assert r["scale_factor"] == pytest.approx((sx, sy), abs=1e-12)
    np.testing.assert_allclose(r["gt_bboxes"][0], [13 * sx, 7 * sy, 50 * sx, 40 * sy], atol=1e-4)


def test_crop_drops_mostly_cut_boxes_and_keeps_masks_in_sync():
    crop = TRANSFORMS.build(dict(type="RandomCrop", min_visibility=0.3))
    boxes = [[10, 10, 30, 30],    # inside the window
             [40, 40, 60, 60],    # 20 x 15 of 20 x 20 visible (0.75): kept, clipped
             [45, 0, 95, 20],     # 15 x 15 of 50 x 20 visible (0.225): dropped
             [0, 60, 20, 100],    # outside: dropped
             [55, 30, 100, 50]]   # 5 x 20 of 45 x 20 visible (0.11): dropped
    r = make_results(100, 100, boxes, labels=[3, 1, 4, 1, 5],
                     ignore=[False, True, False, False, False])
    r = crop.crop(r, (10, 5, 60, 55))
    assert r["img_shape"] == (50, 50) and r["crop_offset"] == (10.0, 5.0)
    np.testing.assert_allclose(r["gt_bboxes"], [[0, 5, 20, 25], [30, 35, 50, 50]], atol=1e-4)
    assert r["gt_labels"].tolist() == [3, 1]
    assert r["gt_ignore_flags"].tolist() == [False, True]
    np.testing.assert_allclose(mask_boxes(r["gt_masks"]), r["gt_bboxes"], atol=1e-3)


def test_random_crop_flip_keep_boxes_and_masks_in_sync():
    random.seed(0)
    crop = TRANSFORMS.build(dict(type="RandomCrop", min_visibility=0.3, area_range=(0.2, 0.8)))
    flip = TRANSFORMS.build(dict(type="RandomFlip", prob=0.5,
                                 direction=["horizontal", "vertical", "diagonal"]))
    rng = np.random.default_rng(1)
    cropped = 0
    for i in range(20):
        xy = rng.integers(0, [60, 50], (6, 2))
        wh = rng.integers(4, 40, (6, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, [96, 80])], 1)
        r = flip(crop(flip(make_results(80, 96, boxes, seed=i))))
        cropped += r["img_shape"] != (80, 96)
        assert len(r["gt_masks"]) == len(r["gt_bboxes"]) == len(r["gt_labels"])
        np.testing.assert_allclose(mask_boxes(r["gt_masks"]), r["gt_bboxes"], atol=1e-3)
        # each surviving box maps back inside its original (labels are the original indices)
        mapped = boxes_to_original(torch.from_numpy(r["gt_bboxes"]), r).numpy()
        orig = boxes[r["gt_labels"]].astype(np.float32)
        assert (mapped[:, :2] >= orig[:, :2] - 1e-3).all()
        assert (mapped[:, 2:] <= orig[:, 2:] + 1e-3).all()
    assert cropped > 10


@pytest.mark.parametrize("order", [
    ("crop", "flip", "resize"), ("flip", "crop", "resize", "flip"),
    ("resize", "crop", "flip", "crop"), ("flip", "resize", "crop", "vflip", "resize")])
def test_mapping_back_after_any_geometry(order):
    """Transform, then map back with the recorded meta: the original box again."""
    steps = dict(crop=dict(type="RandomCrop", area_range=(0.8, 1.0),
                           aspect_ratio_range=(0.95, 1.05), min_visibility=0.0),
                 flip=dict(type="RandomFlip", prob=1.0),
                 vflip=dict(type="RandomFlip", prob=1.0, direction="vertical"),
                 resize=dict(type="Resize", scale=(173, 131)))
    pipeline = [TRANSFORMS.build(steps[s]) for s in order]
    pack = TRANSFORMS.build(dict(type="PackDetInputs"))
    original = np.array([[40.25, 41.5, 60.75, 58.0], [45, 45, 55, 55]], np.float32)
    for seed in range(5):
        random.seed(seed)
        r = make_results(100, 100, original, masks=False)
        for t in pipeline:
            r = t(r)
        sample = pack(r)["data_samples"]
        back = boxes_to_original(sample.gt_instances.bboxes, sample.metainfo)
        torch.testing.assert_close(back, torch.from_numpy(original), atol=1e-4, rtol=0)


def test_test_pipeline_maps_back_exactly(tmp_path):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), np.zeros((97, 131, 3), np.uint8))
    pipeline = [TRANSFORMS.build(c) for c in (
        dict(type="LoadImage"), dict(type="Resize", scale=(333, 200)), dict(type="Normalize"),
        dict(type="Pad", size_divisor=32), dict(type="PackDetInputs"))]
    original = np.array([[0, 0, 131, 97], [12.3, 45.6, 78.9, 90.1]], np.float32)
    r = dict(img_path=str(path), img_id=3, ori_shape=(97, 131), gt_bboxes=original.copy(),
             gt_labels=np.array([0, 1]), gt_ignore_flags=np.zeros(2, bool),
             ori_gt_bboxes=original.copy(), ori_gt_labels=np.array([0, 1]))
    for t in pipeline:
        r = t(r)
    inputs, sample = r["inputs"], r["data_samples"]
    # factor min(333/131, 200/97) = 2.0619: 131 -> 270, 97 -> 200
    assert sample.img_shape == (200, 270) and sample.pad_shape == (224, 288)
    assert inputs.shape == (3, 224, 288) and inputs.dtype == torch.float32
    assert not sample.flip and sample.crop_offset == (0.0, 0.0)
    sx, sy = sample.scale_factor
    scaled = sample.gt_instances.bboxes
    # the documented rule for test pipelines: pred / scale_factor
    back = scaled / torch.tensor([sx, sy, sx, sy])
    torch.testing.assert_close(back, torch.from_numpy(original), atol=1e-4, rtol=0)
    torch.testing.assert_close(boxes_to_original(scaled, sample.metainfo),
                               torch.from_numpy(original), atol=1e-4, rtol=0)
    torch.testing.assert_close(sample.ori_gt_instances.bboxes, torch.from_numpy(original))


def test_normalize_and_pad_by_hand():
    norm = TRANSFORMS.build(dict(type="Normalize"))
    pad = TRANSFORMS.build(dict(type="Pad", size_divisor=32))
    r = make_results(50, 70, [[1, 2, 3, 4]])
    r["img"][0, 0] = (255, 0, 128)
    r = pad(norm(r))
    expected = [(255 - 123.675) / 58.395, (0 - 116.28) / 57.12, (128 - 103.53) / 57.375]
    np.testing.assert_allclose(r["img"][0, 0], expected, rtol=1e-6)
    assert r["img"].shape == (64, 96, 3) and r["pad_shape"] == (64, 96)
    assert (r["img"][50:] == 0).all() and (r["img"][:, 70:] == 0).all()
    assert r["gt_masks"].shape == (1, 64, 96) and r["gt_masks"].sum() == 4
    assert r["img_shape"] == (50, 70)


def test_load_image_is_rgb(tmp_path):
    path = tmp_path / "blue.png"
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's BGR order
    cv2.imwrite(str(path), bgr)
    r = TRANSFORMS.build(dict(type="LoadImage"))(dict(img_path=str(path)))
    assert r["img"].shape == (5, 7, 3) and (r["img"][..., 2] == 255).all()
    assert (r["img"][..., :2] == 0).all()
    assert r["ori_shape"] == r["img_shape"] == (5, 7) and r["scale_factor"] == (1.0, 1.0)


def test_albu_wrapper_builds_by_name():
    albu = TRANSFORMS.build(dict(type="Albu", transforms=[
        dict(type="OneOf", transforms=[dict(type="HorizontalFlip", p=1.0)], p=1.0),
        dict(type="HueSaturationValue", p=1.0)]))
    r = albu(make_results(40, 60, [[10, 5, 30, 25]]))
    np.testing.assert_allclose(r["gt_bboxes"], [[30, 5, 50, 25]], atol=1e-4)
    np.testing.assert_allclose(mask_boxes(r["gt_masks"]), r["gt_bboxes"], atol=1e-3)
    with pytest.raises(UnknownComponentError, match="HueSaturationValue"):
        TRANSFORMS.build(dict(type="Albu", transforms=[dict(type="HueSaturatonValue")]))
    with pytest.raises(ConfigArgumentError, match="Blur"):
        TRANSFORMS.build(dict(type="Albu", transforms=[dict(type="Blur", blur_limt=3)]))


def test_color_jitter_changes_pixels_only_and_is_seedable():
    jitter = TRANSFORMS.build(dict(type="ColorJitter", brightness=0.4, hue=0.1, prob=1.0))
    outs = []
    for _ in range(2):
        random.seed(7)
        outs.append(jitter(make_results(32, 32, [[1, 2, 30, 31]])))
    base = make_results(32, 32, [[1, 2, 30, 31]])
    assert not np.array_equal(outs[0]["img"], base["img"])
    np.testing.assert_array_equal(outs[0]["img"], outs[1]["img"])
    np.testing.assert_array_equal(outs[0]["gt_bboxes"], base["gt_bboxes"])


def test_bad_transform_arguments():
    with pytest.raises(ValueError, match="direction"):
        TRANSFORMS.build(dict(type="RandomFlip", direction="sideways"))
    with pytest.raises(ValueError, match="area_range"):
        TRANSFORMS.build(dict(type="RandomCrop", area_range=(0.0, 1.0)))
    with pytest.raises(ConfigArgumentError, match="size_divisor"):
        TRANSFORMS.build(dict(type="Pad", size_divisr=32))


@pytest.mark.parametrize("hw, sizes", [((480, 640), (800, 1333)), ((150, 230), (800, 1333)),
                                       ((333, 200), (800, 1333)), ((200, 1000), (800, 1333)),
                                       ((100, 163), (128, 200))])  # float32 would give 199
def test_torch_backend_resizes_as_torchvision_generalized_rcnn_transform(hw, sizes):
    """``Resize(backend='torch')`` then ``Normalize`` gives the pixels, size
    and box scaling of torchvision's detection transform (normalise, then
    resize), to float rounding."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    rng = np.random.default_rng(0)
    h, w = hw
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = np.array([[10.0, 20.0, 60.5, 90.25], [0.0, 0.0, w, h]], np.float32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    reference = GeneralizedRCNNTransform(sizes[0], sizes[1], mean, std)
    tensor = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    images, targets = reference([tensor], [dict(boxes=torch.from_numpy(boxes))])
    expected = images.tensors[0, :, :images.image_sizes[0][0], :images.image_sizes[0][1]]

    results = dict(img=img, gt_bboxes=boxes.copy(), gt_labels=np.zeros(2, np.int64))
    results = init_geometry(results)
    resize = dict(type="Resize", scale=(sizes[1], sizes[0]), backend="torch")
    results = TRANSFORMS.build(resize)(results)
    results = TRANSFORMS.build(dict(type="Normalize"))(results)
    assert results["img_shape"] == tuple(images.image_sizes[0])
    got = torch.from_numpy(results["img"]).permute(2, 0, 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(torch.from_numpy(results["gt_bboxes"]), targets[0]["boxes"])
    sx, sy = results["scale_factor"]
    assert sx == pytest.approx(results["img_shape"][1] / w)
    assert sy == pytest.approx(results["img_shape"][0] / h)

    # torchvision's order and arithmetic (0..1 units, normalise then resize): bit for bit
    results = init_geometry(dict(img=img))
    results = TRANSFORMS.build(dict(type="Normalize", scale=255, mean=mean, std=std))(results)
    results = TRANSFORMS.build(resize)(results)
    assert torch.equal(torch.from_numpy(results["img"]).permute(2, 0, 1), expected)


def test_torch_backend_needs_keep_ratio():
    with pytest.raises(ValueError, match="keep_ratio"):
        TRANSFORMS.build(dict(type="Resize", scale=(1333, 800), keep_ratio=False, backend="torch"))


@pytest.mark.parametrize("hw, expected", [((480, 640), (800, 1066)), ((640, 480), (1066, 800)),
                                          ((500, 2000), (333, 1332)), ((800, 900), (800, 900)),
                                          ((427, 640), (800, 1199))])
def test_detr_size_rule_equals_the_official_get_size_with_aspect_ratio(hw, expected):
    """The DETR authors' rule (datasets/transforms.py in facebookresearch/detr),
    worked by hand: 640x480 -> 1066x800 (int(800 * 640 / 480) = 1066),
    2000x500 -> short side round(1333 * 500 / 2000) = 333, long int(333 * 4) = 1332."""
    resize = TRANSFORMS.build(dict(type="Resize", scale=(1333, 800), size_rule="detr"))
    assert resize.target_size(*hw) == expected
