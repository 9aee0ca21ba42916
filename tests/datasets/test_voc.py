"""VOCDataset: 1-based box conversion, difficult flags, class lists, bad XML."""
import warnings

import numpy as np
import pytest
import torch

from toolbox.datasets.base import DataWarning
from toolbox.datasets.voc import VOC_CLASSES
from toolbox.errors import DataError
from toolbox.registry import DATASETS

PIPE = [dict(type="LoadImage"), dict(type="PackDetInputs")]


def build(root, **kw):
    cfg = dict(type="VOCDataset", data_root=str(root), ann_file="ImageSets/Main/train.txt",
               pipeline=PIPE)
    cfg.update(kw)
    return DATASETS.build(cfg)


def test_boxes_difficult_and_unknown_classes(voc_root):
    with pytest.warns(DataWarning, match="unicorn"):
        ds = build(voc_root)
    assert ds.metainfo["classes"] == VOC_CLASSES and len(ds) == 2
    s = ds[0]["data_samples"]
    assert s.img_id == "000001" and s.ori_shape == (100, 120)
    # 1-based inclusive (1, 1, 120, 100) is the whole 120 x 100 image
    torch.testing.assert_close(s.gt_instances.bboxes, torch.tensor([[0., 0., 120., 100.]]))
    assert s.gt_instances.labels.tolist() == [VOC_CLASSES.index("dog")]
    # the difficult person (11, 21, 30, 40) -> (10, 20, 30, 40), ignored
    torch.testing.assert_close(s.ignored_instances.bboxes, torch.tensor([[10., 20., 30., 40.]]))
    assert s.ori_gt_instances.ignore.tolist() == [False, True]
    # no <size>: read from the 50 x 40 image; xmax 60 is clipped to 50
    s2 = ds[1]["data_samples"]
    assert s2.ori_shape == (40, 50)
    torch.testing.assert_close(s2.gt_instances.bboxes, torch.tensor([[2., 3., 50., 20.]]))
    freq = ds.class_frequencies()
    assert freq["instance_counts"][VOC_CLASSES.index("dog")] == 1
    assert freq["instance_counts"][VOC_CLASSES.index("person")] == 0  # difficult only
    assert sum(freq["instance_counts"]) == 2


def test_custom_class_list(voc_root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = build(voc_root, metainfo=dict(classes=("cat", "unicorn")))
    assert ds.metainfo["classes"] == ("cat", "unicorn")
    np.testing.assert_array_equal(ds.get_data_info(0)["labels"], [1])
    np.testing.assert_array_equal(ds.get_data_info(0)["bboxes"], [[4, 4, 9, 9]])
    with pytest.raises(DataError, match="classes"):
        build(voc_root, metainfo=dict(classes="cat"))


def test_malformed_xml_names_file_and_line(voc_root):
    bad = voc_root / "Annotations" / "000002.xml"
    bad.write_text("<annotation>\n<size>\n<width>3</width>\n</annotation>\n")
    with pytest.raises(DataError) as e:
        build(voc_root)
    assert str(bad) in str(e.value) and "line 4" in str(e.value)


def test_missing_files_are_named(voc_root):
    (voc_root / "Annotations" / "000002.xml").unlink()
    with pytest.raises(DataError, match="000002.xml"):
        build(voc_root)
    with pytest.raises(DataError, match="val.txt"):
        build(voc_root, ann_file="ImageSets/Main/val.txt")


def test_malformed_box_is_named(voc_root, voc_xml_writer):
    voc_xml_writer(voc_root / "Annotations" / "000002.xml", 50, 40,
                  [("cat", ("a", 4, 60, 20), 0)])
    with pytest.raises(DataError, match="000002.xml.*object 0"):
        build(voc_root)
