"""CocoDataset: parsing, label mapping, ignore flags, masks and bad input."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

from toolbox.datasets.base import DataWarning, ImageDecodeError
from toolbox.errors import ConfigArgumentError, DataError
from toolbox.registry import DATASETS

PIPE = [dict(type="LoadImage"), dict(type="PackDetInputs")]


def build(root, **kw):
    cfg = dict(type="CocoDataset", data_root=str(root), ann_file="annotations/train.json",
               data_prefix=dict(img="images/"), pipeline=PIPE)
    cfg.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return DATASETS.build(cfg)


def rewrite(root, edit):
    path = root / "annotations" / "train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return str(path)


def test_labels_ignore_flags_and_clipping(coco_root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = DATASETS.build(dict(type="CocoDataset", data_root=str(coco_root),
                                 ann_file="annotations/train.json", img_dir="images",
                                 pipeline=PIPE))
    # categories sorted by id: 2 cat, 5 dog, 10 bird
    assert ds.metainfo["classes"] == ("cat", "dog", "bird")
    assert ds.metainfo["cat_ids"] == (2, 5, 10)
    # exactly one warning for the two degenerate boxes
    dropped = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(dropped) == 1 and "2 box(es)" in str(dropped[0].message)
    assert len(ds) == 2  # the image without objects is filtered in training

    out = ds[0]
    s = out["data_samples"]
    # packed as loaded (uint8); the model's data preprocessor casts and normalises
    assert out["inputs"].shape == (3, 100, 200) and out["inputs"].dtype == torch.uint8
    assert s.img_id == 7 and s.ori_shape == (100, 200) and s.img_shape == (100, 200)
    assert s.img_path == os.path.join(str(coco_root), "images", "a.jpg")
    # [x, y, w, h] -> x1 y1 x2 y2; the bird box [180, 90, 40, 30] is clipped
    torch.testing.assert_close(s.gt_instances.bboxes,
                               torch.tensor([[10., 20., 40., 60.], [180., 90., 200., 100.]]))
    assert s.gt_instances.labels.tolist() == [1, 2]
    torch.testing.assert_close(s.ignored_instances.bboxes, torch.tensor([[100., 10., 150., 60.]]))
    assert s.ignored_instances.labels.tolist() == [0]
    assert s.ori_gt_instances.ignore.tolist() == [False, True, False]
    assert s.ori_gt_instances.labels.tolist() == [1, 0, 2]
    # counts over non-crowd boxes: cat 0, dog 1, bird 2 (in 2 images)
    assert ds.class_frequencies() == dict(instance_counts=[0, 1, 2], image_counts=[0, 1, 2],
                                          num_images=2)


def test_image_without_objects_gives_empty_tensors(coco_root):
    ds = build(coco_root, test_mode=True)
    assert len(ds) == 3
    s = ds[2]["data_samples"]
    assert s.gt_instances.bboxes.shape == (0, 4) and s.gt_instances.bboxes.dtype == torch.float32
    assert s.gt_instances.labels.shape == (0,) and s.gt_instances.labels.dtype == torch.int64
    assert s.ori_gt_instances.bboxes.shape == (0, 4)
    assert len(build(coco_root, filter_empty_gt=False)) == 3


def test_masks_from_polygon_and_rle(coco_root):
    ds = build(coco_root, with_mask=True)
    s = ds[0]["data_samples"]
    masks = s.gt_instances.masks
    assert masks.dtype == torch.bool and masks.shape == (2, 100, 200)
    # polygon rectangle x 10..40, y 20..60 rasterised by pycocotools: within a pixel
    ys, xs = torch.nonzero(masks[0], as_tuple=True)
    box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    assert (box - torch.tensor([10., 20., 40., 60.])).abs().max() <= 1
    # the crowd RLE covers exactly x 100..150, y 10..60
    crowd = s.ignored_instances.masks[0]
    expected = torch.zeros(100, 200, dtype=torch.bool)
    expected[10:60, 100:150] = True
    assert torch.equal(crowd, expected)
    assert s.ori_gt_instances.masks.shape == (3, 100, 200)


def test_classes_override_selects_categories(coco_root):
    ds = build(coco_root, metainfo=dict(classes=("bird", "dog")))
    assert ds.metainfo["cat_ids"] == (10, 5)
    s = ds[0]["data_samples"]
    assert s.gt_instances.labels.tolist() == [1, 0]
    assert len(s.ignored_instances) == 0  # the crowd 'cat' is not a selected class
    with pytest.raises(DataError, match="cow"):
        build(coco_root, metainfo=dict(classes=("bird", "cow")))


def test_unknown_ids_are_named(coco_root):
    path = rewrite(coco_root, lambda d: d["annotations"].append(
        dict(id=99, image_id=12345, category_id=5, bbox=[1, 1, 2, 2])))
    with pytest.raises(DataError, match="12345") as e:
        build(coco_root)
    assert path in str(e.value)
    rewrite(coco_root, lambda d: d["annotations"][-1].update(image_id=7, category_id=777))
    with pytest.raises(DataError, match="777") as e:
        build(coco_root)
    assert path in str(e.value)


def test_malformed_json_names_line_and_column(coco_root):
    path = coco_root / "annotations" / "train.json"
    path.write_text('{\n  "images": [\n    {"id": 1,, "file_name": "a.jpg"}\n  ]\n}\n')
    with pytest.raises(DataError) as e:
        build(coco_root)
    msg = str(e.value)
    assert str(path) in msg and "line 3" in msg and "column 14" in msg  # the second comma


def test_missing_files_are_named(coco_root):
    with pytest.raises(DataError, match="nope.json"):
        build(coco_root, ann_file="annotations/nope.json")
    os.remove(coco_root / "images" / "b.jpg")
    ds = build(coco_root, skip_bad_images=False)
    with pytest.raises(DataError, match=str(coco_root / "images" / "b.jpg")):
        ds[1]
    # in training, by default, a missing image is skipped with a warning and counted
    ds = build(coco_root)
    with pytest.warns(DataWarning, match="b.jpg"):
        assert ds[1]["data_samples"].img_id != 8
    assert ds.skipped_images == [str(coco_root / "images" / "b.jpg")]
    # evaluation sees every image or fails
    ds = build(coco_root, test_mode=True)
    with pytest.raises(DataError, match="b.jpg"):
        ds[1]


def test_too_many_bad_images_stop_the_run_with_the_list(coco_root):
    os.remove(coco_root / "images" / "a.jpg")
    os.remove(coco_root / "images" / "b.jpg")
    ds = build(coco_root, max_bad_images=0.0)  # 2 images: at most 1 may be skipped
    with pytest.warns(DataWarning):
        with pytest.raises(DataError, match=r"2 images could not be read.*max_bad_images=0"
                                            r".*a\.jpg.*b\.jpg|b\.jpg.*a\.jpg") as err:
            ds[0]
    assert "check_dataset" in str(err.value)


def test_undecodable_image_error_or_skip(coco_root):
    bad = coco_root / "images" / "a.jpg"
    bad.write_bytes(b"not a jpeg at all")
    ds = build(coco_root, skip_bad_images=False)
    with pytest.raises(ImageDecodeError, match=str(bad)):
        ds[0]
    ds = build(coco_root, skip_bad_images=True)
    with pytest.warns(DataWarning, match="a.jpg"):
        out = ds[0]
    assert out["data_samples"].img_id == 9  # the next image instead
    assert ds.num_skipped_images == 1


def test_unknown_constructor_argument(coco_root):
    with pytest.raises(ConfigArgumentError, match="ann_file"):
        DATASETS.build(dict(type="CocoDataset", data_root=str(coco_root), ann_fil="x.json"))


def test_image_size_mismatch_is_reported(coco_root):
    rewrite(coco_root, lambda d: d["images"][0].update(height=99))
    ds = build(coco_root, skip_bad_images=False)
    with pytest.raises(DataError, match="a.jpg"):
        ds[0]
    ds = build(coco_root)
    with pytest.warns(DataWarning, match="a.jpg is 100x200 .* annotation says 99x200"):
        ds[0]


def test_raw_records_without_pipeline(coco_root):
    ds = build(coco_root, pipeline=[])
    raw = ds[1]
    np.testing.assert_array_equal(raw["gt_bboxes"], [[0, 0, 80, 60]])
    assert raw["gt_labels"].dtype == np.int64


def test_label_cat_ids_puts_labels_in_a_reference_label_space(coco_root):
    """``label_cat_ids=range(11)``: label == category id (torchvision/DETR's
    91-index convention), ids the file lacks are 'N/A', and the COCO metric
    maps labels back through the same ``cat_ids``."""
    ds = build(coco_root, label_cat_ids=list(range(11)))
    assert ds.metainfo["cat_ids"] == tuple(range(11))
    assert ds.metainfo["classes"][2] == "cat" and ds.metainfo["classes"][10] == "bird"
    assert ds.metainfo["classes"][0] == "N/A" and ds.metainfo["classes"][3] == "N/A"
    s = ds[0]["data_samples"]
    assert s.gt_instances.labels.tolist() == [5, 10]  # dog, bird: their category ids
    assert s.ignored_instances.labels.tolist() == [2]
    # only some ids: the others' annotations are ignored
    ds = build(coco_root, label_cat_ids=[10, 2], filter_empty_gt=False)
    assert ds.metainfo["classes"] == ("bird", "cat")
    assert ds[0]["data_samples"].gt_instances.labels.tolist() == [0]


def test_label_cat_ids_must_be_distinct_ints(coco_root):
    with pytest.raises(DataError, match="label_cat_ids"):
        build(coco_root, label_cat_ids=[1, 1])
    with pytest.raises(DataError, match="not both"):
        build(coco_root, label_cat_ids=[1, 2], metainfo=dict(classes=("cat",)))


def test_num_images_keeps_the_first_images_for_short_runs(coco_root):
    assert len(build(coco_root, num_images=1)) == 1
    assert len(build(coco_root, test_mode=True, num_images=2)) == 2
    with pytest.raises(DataError, match="num_images"):
        build(coco_root, num_images=0)
