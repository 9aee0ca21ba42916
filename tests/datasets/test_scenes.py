"""The second synthetic set ('scenes'): determinism, varying non-square sizes,
iscrowd regions reaching ignored_instances, COCO = VOC, its own classes, and
a config on the scenes base building a dataset."""
import hashlib
import json
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config

from toolbox.datasets import scenes_gen
from toolbox.datasets import synthetic_generation as shapes_gen
from toolbox.datasets.synthetic import ensure_generated, split_dir
from toolbox.errors import DataError
from toolbox.registry import DATASETS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE = [dict(type="LoadImage"), dict(type="PackDetInputs")]


def file_hashes(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = hashlib.sha256(
                    fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def scenes_root(tmp_path_factory):
    """data_root of a 6-image 'val' scenes split with a crowded image."""
    root = str(tmp_path_factory.mktemp("scenes"))
    ensure_generated(scenes_gen.scene_spec("val", num_images=6, image_size=240), root)
    return root


def build(root, kind="SyntheticCocoDataset", **kw):
    cfg = dict(type=kind, data_root=root, split="val", num_images=6, image_size=240,
               generator="scenes")
    return DATASETS.build(dict(cfg, **kw))


def test_same_seed_same_bytes_any_workers(tmp_path, scenes_root):
    spec = scenes_gen.scene_spec("val", num_images=6, image_size=240)
    a = file_hashes(os.path.join(scenes_root, "val"))
    scenes_gen.generate(spec, str(tmp_path / "forked"), workers=2)
    assert file_hashes(tmp_path / "forked") == a
    assert {"meta.json", "annotations/instances_val.json", "ImageSets/Main/val.txt",
            "JPEGImages/val_000005.jpg", "Annotations/val_000005.xml"} <= set(a)
    other = scenes_gen.scene_spec("val", num_images=6, image_size=240, seed=1)
    scenes_gen.generate(other, str(tmp_path / "seed1"), workers=1)
    assert file_hashes(tmp_path / "seed1")["JPEGImages/val_000000.jpg"] != \
        a["JPEGImages/val_000000.jpg"]


def test_non_square_images_of_varying_size(scenes_root):
    ds = build(scenes_root, pipeline=PIPELINE)
    shapes = {(ds.get_data_info(i)["height"], ds.get_data_info(i)["width"]) for i in range(6)}
    assert len(shapes) == 6 and all(h != w for h, w in shapes)
    assert all(max(h, w) <= 240 and min(h, w) >= 64 for h, w in shapes)
    assert ds[0]["data_samples"].ori_shape == (ds.get_data_info(0)["height"],
                                               ds.get_data_info(0)["width"])


def test_statistics_and_crowded_scene(scenes_root):
    root = os.path.join(scenes_root, "val")
    stats = json.load(open(os.path.join(root, "meta.json")))["statistics"]
    coco = json.load(open(os.path.join(root, "annotations", "instances_val.json")))
    plain = [a for a in coco["annotations"] if not a["iscrowd"]]
    assert stats["objects"] == len(plain)
    assert stats["crowd_regions"] == sum(a["iscrowd"] for a in coco["annotations"]) >= 1
    assert stats["crowded_images"] >= 1 and stats["max_objects_in_an_image"] >= 15
    assert stats["min_visible_fraction"] >= scenes_gen.VISIBLE_FLOOR
    areas = np.array([a["area"] for a in plain])
    assert stats["fraction_small"] == pytest.approx((areas < 1024).mean(), abs=1e-3)
    assert 0 < stats["fraction_overlapping"] < 1


def test_crowd_regions_reach_ignored_instances(scenes_root):
    ds = build(scenes_root, pipeline=PIPELINE, with_mask=True)
    coco = json.load(open(os.path.join(scenes_root, "val", "annotations", "instances_val.json")))
    crowd = [a for a in coco["annotations"] if a["iscrowd"]]
    found = 0
    for i in range(len(ds)):
        sample = ds[i]["data_samples"]
        ignored = sample.ignored_instances.bboxes
        img_id = ds.get_data_info(i)["img_id"]
        expected = [a["bbox"] for a in crowd if a["image_id"] == img_id]
        assert len(ignored) == len(expected)
        for (x, y, w, h), box in zip(expected, ignored):
            torch.testing.assert_close(box, torch.tensor([x, y, x + w, y + h]).float())
        found += len(expected)
        # the decoded RLE masks of the objects: their extent is the box
        for box, mask in zip(sample.gt_instances.bboxes, sample.gt_instances.masks):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            extent = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            torch.testing.assert_close(extent, box)
    assert found == len(crowd) >= 1


def test_voc_and_coco_readers_agree(scenes_root):
    coco, voc = build(scenes_root), build(scenes_root, kind="SyntheticVOCDataset")
    assert len(coco) == len(voc) == 6
    for i in range(6):
        a, b = coco.get_data_info(i), voc.get_data_info(i)
        np.testing.assert_array_equal(a["bboxes"], b["bboxes"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_array_equal(a["ignore_flags"], b["ignore_flags"])  # difficult


def test_classes_differ_from_the_shapes_set(scenes_root, tmp_path):
    coco = build(scenes_root)
    assert coco.metainfo["classes"] == scenes_gen.CLASSES
    assert not set(scenes_gen.CLASSES) & set(shapes_gen.CLASSES)
    assert DATASETS.get("SyntheticCocoDataset").METAINFO["classes"] == shapes_gen.CLASSES
    cls = DATASETS.get("SyntheticVOCDataset")
    assert cls.classes_of_config(dict(generator="scenes")) == scenes_gen.CLASSES
    # a distinct cache folder and hash
    scenes = scenes_gen.scene_spec("val", num_images=6)
    shapes = shapes_gen.SyntheticSpec(split="val", num_images=6)
    assert scenes.variant_hash() != shapes.variant_hash()
    assert os.path.dirname(split_dir(scenes, None)) != os.path.dirname(split_dir(shapes, None))
    with pytest.raises(DataError, match="generator"):
        build(str(tmp_path), generator="polygons")
    with pytest.raises(DataError, match="long_tail"):
        build(str(tmp_path), long_tail=dict(profile="step"))


def test_config_on_the_scenes_base_builds_a_dataset(tmp_path):
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "_base_", "datasets",
                                       "synthetic_scenes.py"))
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert cfg[loader]["dataset"]["generator"] == "scenes"
    ds_cfg = dict(cfg.val_dataloader.dataset, data_root=str(tmp_path), num_images=3)
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == 3 and ds.metainfo["classes"] == scenes_gen.CLASSES
    inputs = ds[0]["inputs"]
    assert max(inputs.shape[-2:]) == 256  # the shapes base's pipeline: Resize to 256


def test_recipe_overrides_for_the_scenes_set():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "recipes", os.path.join(ROOT, "benchmarks", "recipes.py"))
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    data = recipes.dataset_overrides("scenes")
    assert {f"{loader}.dataset.generator=scenes" for loader in recipes.LOADERS} <= set(data)
    assert recipes.dataset_overrides("shapes") == []
    assert recipes.num_classes_overrides(recipes.RECIPES["faster_rcnn"], 5) == [
        "model.roi_head.num_classes=5"]
    assert recipes.num_classes_overrides(recipes.RECIPES["quickstart"], 5) == [
        "model.bbox_head.num_classes=5"]
    assert recipes.num_classes_overrides(recipes.RECIPES["ga_rpn"], 5) == []  # class-agnostic
    assert recipes.cfg_options("quickstart", "shapes", smoke=False) == []
