"""The synthetic shapes dataset: determinism, COCO = VOC, masks, long tail, cache."""
import hashlib
import json
import os
import threading

import numpy as np
import pytest
import torch

from toolbox.datasets import synthetic_generation as gen
from toolbox.datasets.synthetic import ensure_generated
from toolbox.errors import DataError
from toolbox.registry import DATASETS


def file_hashes(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_same_parameters_same_bytes(tmp_path):
    spec = gen.SyntheticSpec(split="train", num_images=5, image_size=64, seed=3)
    a = file_hashes(ensure_generated(spec, str(tmp_path / "a")))
    b = file_hashes(ensure_generated(spec, str(tmp_path / "b")))
    assert a == b
    gen.generate(spec, str(tmp_path / "forked"), workers=2)  # process pool: same bytes
    assert file_hashes(tmp_path / "forked") == a
    assert {"meta.json", "annotations/instances_train.json", "ImageSets/Main/train.txt",
            "JPEGImages/train_000004.jpg", "Annotations/train_000004.xml",
            "SegmentationClass/train_000004.png"} <= set(a)
    other = file_hashes(ensure_generated(
        gen.SyntheticSpec(split="train", num_images=5, image_size=64, seed=4),
        str(tmp_path / "c")))
    assert other["JPEGImages/train_000000.jpg"] != a["JPEGImages/train_000000.jpg"]


def test_generation_takes_every_usable_core_for_large_splits(monkeypatch):
    monkeypatch.setattr(gen.sys, "platform", "linux")
    monkeypatch.setattr(gen.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert gen.generation_workers(1250) == 2  # the quickstart's splits on 2 cores
    assert gen.generation_workers(150) == 1  # small splits stay in one process
    monkeypatch.setattr(gen.os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert gen.generation_workers(1250) == 8  # capped at 8, and at one per 100 images
    assert gen.generation_workers(300) == 3
    monkeypatch.setattr(gen.sys, "platform", "darwin")
    assert gen.generation_workers(1250) == 1


def test_coco_and_voc_agree_and_masks_match_boxes(tiny_synthetic):
    coco = DATASETS.build(dict(type="SyntheticCocoDataset", data_root=tiny_synthetic,
                               split="val", num_images=8, image_size=96, with_mask=True,
                               pipeline=[dict(type="LoadImage"), dict(type="PackDetInputs")]))
    voc = DATASETS.build(dict(type="SyntheticVOCDataset", data_root=tiny_synthetic,
                              split="val", num_images=8, image_size=96))
    assert coco.metainfo["classes"] == voc.metainfo["classes"] == gen.CLASSES
    assert len(coco) == len(voc) == 8
    for i in range(8):
        a, b = coco.get_data_info(i), voc.get_data_info(i)
        np.testing.assert_array_equal(a["bboxes"], b["bboxes"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert 1 <= len(a["bboxes"]) <= 8
        s = coco[i]["data_samples"]
        assert s.ori_shape == (96, 96)
        # amodal masks decoded from the COCO polygons: their extent is the box
        for box, mask in zip(s.gt_instances.bboxes, s.gt_instances.masks):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            extent = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            torch.testing.assert_close(extent, box)


def test_segmentation_png_and_statistics(tiny_synthetic):
    import cv2

    root = os.path.join(tiny_synthetic, "val")
    meta = json.load(open(os.path.join(root, "meta.json")))
    coco = json.load(open(os.path.join(root, "annotations", "instances_val.json")))
    stats = meta["statistics"]
    assert stats["objects"] == len(coco["annotations"])
    assert stats["objects_per_image"] == pytest.approx(len(coco["annotations"]) / 8, abs=1e-3)
    areas = np.array([a["area"] for a in coco["annotations"]])
    assert stats["fraction_small"] == pytest.approx((areas < 1024).mean(), abs=1e-3)
    seg = cv2.imread(os.path.join(root, "SegmentationClass", "val_000000.png"),
                     cv2.IMREAD_UNCHANGED)
    assert seg.shape == (96, 96) and seg.dtype == np.uint8
    labels0 = {a["category_id"] for a in coco["annotations"] if a["image_id"] == 1}
    assert set(np.unique(seg)) - {0} <= labels0 and 0 in seg  # class k + 1 = category id


def test_long_tail_profile(tmp_path):
    ds = DATASETS.build(dict(type="SyntheticCocoDataset", data_root=str(tmp_path), split="train",
                             num_images=40, image_size=96,
                             long_tail=dict(profile="exponential", imbalance=100)))
    counts = np.array(ds.class_frequencies()["instance_counts"])
    assert counts.max() / counts.min() >= 50
    assert (np.diff(counts) <= 0).all()
    # the profile: n_k proportional to 100 ** (-k / 5), within rounding
    expected = counts.sum() * 100.0 ** (-np.arange(6) / 5) / (100.0 ** (-np.arange(6) / 5)).sum()
    assert np.abs(counts - expected).max() <= 1.5
    with pytest.raises(DataError, match="profile"):
        DATASETS.build(dict(type="SyntheticCocoDataset", data_root=str(tmp_path),
                            long_tail=dict(profile="zipf")))


def test_cache_dir_reuse_and_parameter_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLBOX_DATA_DIR", str(tmp_path / "cache"))
    calls = []
    real = gen.generate
    monkeypatch.setattr(gen, "generate", lambda spec, out: calls.append(spec) or real(spec, out))
    cfg = dict(type="SyntheticCocoDataset", split="val", num_images=3, image_size=64)
    first = DATASETS.build(cfg)
    second = DATASETS.build(cfg)
    assert len(calls) == 1 and len(first) == len(second) == 3
    spec = calls[0]
    assert first.data_root == str(tmp_path / "cache" / "synthetic" / f"val-{spec.variant_hash()}")
    DATASETS.build(dict(cfg, data_root=str(tmp_path / "mine")))
    with pytest.raises(DataError, match="num_images"):
        DATASETS.build(dict(cfg, data_root=str(tmp_path / "mine"), num_images=4))


def test_concurrent_generation_writes_once_and_failures_leave_nothing(tmp_path, monkeypatch):
    spec = gen.SyntheticSpec(split="val", num_images=3, image_size=64)
    calls = []
    real = gen.generate
    monkeypatch.setattr(gen, "generate", lambda s, out: calls.append(out) or real(s, out))
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        ensure_generated(spec, str(tmp_path / "shared")))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 2
    assert sorted(os.listdir(tmp_path / "shared")) == [".val.lock", "val"]

    def broken(s, out):
        os.makedirs(os.path.join(out, "JPEGImages"))
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "generate", broken)
    with pytest.raises(RuntimeError):
        ensure_generated(spec, str(tmp_path / "other"))
    assert os.listdir(tmp_path / "other") == [".val.lock"]  # no half-written dataset


def test_bad_parameters(tmp_path):
    with pytest.raises(DataError, match="image_size"):
        gen.SyntheticSpec(image_size=8)
    with pytest.raises(DataError, match="num_images"):
        gen.SyntheticSpec(num_images=0)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "something.txt").write_text("x")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        ensure_generated(gen.SyntheticSpec(split="val", num_images=2, image_size=64),
                             str(tmp_path))
