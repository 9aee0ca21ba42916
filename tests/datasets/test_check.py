"""tools/check_dataset.py and toolbox.datasets.check: every problem kind is
found, counted and named before a run."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config

from toolbox.datasets.base import DataWarning
from toolbox.datasets.check import check_config_datasets, check_dataset, format_checks
from toolbox.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]
PIPE = [dict(type="LoadImage"), dict(type="PackDetInputs")]


def _coco_cfg(root, **dataset):
    ds = dict(type="CocoDataset", data_root=str(root), ann_file="annotations/train.json",
              data_prefix=dict(img="images/"), pipeline=PIPE, **dataset)
    return Config(dict(default_scope="toolbox",
                       model=dict(type="SingleStageDetector", bbox_head=dict(num_classes=3)),
                       train_dataloader=dict(dataset=ds)))


def _edit(root, edit):
    path = root / "annotations" / "train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _check(cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return check_config_datasets(cfg)


def test_a_clean_dataset_passes(coco_root):
    (report,) = _check(_coco_cfg(coco_root))
    assert report.num_images == 2 and report.num_classes == 3 and not report.errors
    # the fixture's own flaws: two boxes without area, one clipped at the border
    assert len(report.problems["box with zero or negative width/height"]) == 2
    assert report.problems["box with partly outside the image (clipped)"] == [
        str(coco_root / "images" / "a.jpg")]


def test_files_sizes_and_nan_boxes_are_counted_with_their_files(coco_root):
    os.remove(coco_root / "images" / "b.jpg")
    (coco_root / "images" / "empty.jpg").write_bytes(b"garbage")

    def edit(data):
        data["images"][0]["height"] = 99
        data["annotations"].append(dict(id=9, image_id=7, category_id=5, iscrowd=0, area=1,
                                        bbox=[float("nan"), 1.0, 5.0, 5.0]))
    _edit(coco_root, edit)
    (report,) = _check(_coco_cfg(coco_root, filter_empty_gt=False))
    p = report.problems
    assert p["missing image file"] == [str(coco_root / "images" / "b.jpg")]
    assert p["unreadable image header"] == [str(coco_root / "images" / "empty.jpg")]
    assert p["image size differs from annotation"] == [str(coco_root / "images" / "a.jpg")]
    assert p["box with non-finite coordinates (NaN/inf)"] == [str(coco_root / "images" / "a.jpg")]
    text = format_checks([report])
    assert "1 x box with non-finite coordinates (NaN/inf): a.jpg" in text
    assert "1 x missing image file: b.jpg" in text


def test_num_classes_and_empty_splits_are_errors(coco_root):
    cfg = _coco_cfg(coco_root)
    cfg.model.bbox_head.num_classes = 80
    (report,) = _check(cfg)
    assert report.errors == ["model.bbox_head.num_classes is 80 but the dataset has 3 classes"]
    _edit(coco_root, lambda d: d.update(annotations=[]))
    (report,) = _check(_coco_cfg(coco_root))
    assert report.errors == ["0 images left: 3 image(s) were loaded but none has a box that is "
                             "not ignored (filter_empty_gt=True drops them)"]


def test_unknown_ids_are_reported_as_errors(coco_root):
    _edit(coco_root, lambda d: d["annotations"].append(
        dict(id=10, image_id=7, category_id=77, bbox=[1, 1, 5, 5], iscrowd=0)))
    (report,) = _check(_coco_cfg(coco_root))
    assert "unknown category_id 77" in report.errors[0]


def test_label_maps_are_checked(tmp_path):
    import cv2
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    for name, (h, w), value in (("a", (20, 30), 1), ("b", (20, 30), 9), ("c", (20, 30), 0)):
        cv2.imwrite(str(tmp_path / "img" / f"{name}.jpg"), np.zeros((h, w, 3), np.uint8))
        seg_shape = (h, w) if name != "c" else (10, 30)
        cv2.imwrite(str(tmp_path / "ann" / f"{name}.png"), np.full(seg_shape, value, np.uint8))
    ds = DATASETS.build(dict(type="SegDataset", img_dir=str(tmp_path / "img"),
                             seg_map_dir=str(tmp_path / "ann"),
                             metainfo=dict(classes=("bg", "thing")), pipeline=[]))
    report = check_dataset(ds, "train_dataloader.dataset")
    assert report.problems["label values out of range"] == [str(tmp_path / "ann" / "b.png")]
    assert report.problems["label map size differs from image"] == [str(tmp_path / "ann" / "c.png")]


def test_command_line_table_and_exit_status(coco_root, tmp_path):
    cfg = _coco_cfg(coco_root)
    good = tmp_path / "good.py"
    cfg.dump(str(good))
    run = subprocess.run([sys.executable, str(ROOT / "tools/check_dataset.py"), str(good)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "train_dataloader.dataset" in run.stdout and "CocoDataset" in run.stdout
    cfg.model.bbox_head.num_classes = 5
    bad = tmp_path / "bad.py"
    cfg.dump(str(bad))
    run = subprocess.run([sys.executable, str(ROOT / "tools/check_dataset.py"), str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "ERROR: model.bbox_head.num_classes is 5 but the dataset has 3 classes" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
