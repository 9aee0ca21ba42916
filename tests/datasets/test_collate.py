"""det_collate: lists the images and samples; registry lookup; a DataLoader of it."""
import pytest
import torch
from mmengine.registry import FUNCTIONS as MME_FUNCTIONS
from mmengine.structures import InstanceData
from torch.utils.data import DataLoader

from toolbox.datasets.collate import det_collate, seg_collate
from toolbox.registry import DATASETS, FUNCTIONS, MODELS
from toolbox.structures import DetDataSample


def item(h, w, fill, n_masks=1):
    s = DetDataSample(metainfo=dict(img_shape=(h, w)))
    s.gt_instances = InstanceData(bboxes=torch.zeros(n_masks, 4),
                                  labels=torch.zeros(n_masks, dtype=torch.long),
                                  masks=torch.ones(n_masks, h, w, dtype=torch.bool))
    return dict(inputs=torch.full((3, h, w), float(fill)), data_samples=s)


def test_lists_images_and_samples():
    """Nothing is padded or stacked here (the data preprocessor does it, on
    the device; see tests/models/test_data_preprocessor.py)."""
    batch = [item(50, 70, 1), item(64, 64, 2), item(33, 100, 3, n_masks=0)]
    batch[0]["inputs"] = batch[0]["inputs"].to(torch.uint8)
    out = det_collate(batch)
    assert isinstance(out["inputs"], list) and len(out["inputs"]) == 3
    assert out["inputs"][0].dtype == torch.uint8 and out["inputs"][0].shape == (3, 50, 70)
    assert out["inputs"][2] is batch[2]["inputs"]
    samples = out["data_samples"]
    assert isinstance(samples, list) and [s.img_shape for s in samples] == [
        (50, 70), (64, 64), (33, 100)]
    assert samples[0].gt_instances.masks.shape == (1, 50, 70)
    with pytest.raises(ValueError, match="empty batch"):
        det_collate([])
    with pytest.raises(ValueError, match="item 1"):
        det_collate([item(4, 4, 0), dict(inputs=torch.zeros(4, 4))])


def test_registered_for_configs():
    assert FUNCTIONS.get("det_collate") is det_collate
    # what mmengine's runner does with collate_fn=dict(type='toolbox.det_collate')
    assert MME_FUNCTIONS.get("toolbox.det_collate") is det_collate
    assert MME_FUNCTIONS.get("toolbox.seg_collate") is seg_collate


def test_dataloader_with_synthetic_dataset(tiny_synthetic):
    ds = DATASETS.build(dict(
        type="SyntheticCocoDataset", data_root=tiny_synthetic, split="val", num_images=8,
        image_size=96, pipeline=[
            dict(type="LoadImage"), dict(type="RandomCrop", area_range=(0.5, 1.0)),
            dict(type="Resize", scale=(100, 80)), dict(type="RandomFlip", prob=0.5),
            dict(type="ColorJitter"), dict(type="PackDetInputs")]))
    loader = DataLoader(ds, batch_size=4, collate_fn=det_collate)
    preprocess = MODELS.build(dict(type="DetDataPreprocessor", mean=(123.675, 116.28, 103.53),
                                   std=(58.395, 57.12, 57.375), pad_size_divisor=32))
    batches = list(loader)
    assert len(batches) == 2
    for b in batches:
        assert all(x.dtype == torch.uint8 for x in b["inputs"])
        b = preprocess(b)
        x = b["inputs"]
        assert x.dtype == torch.float32 and x.shape[:2] == (4, 3)
        assert x.shape[2] % 32 == 0 and x.shape[3] % 32 == 0
        for s in b["data_samples"]:
            h, w = s.img_shape
            # keep-ratio rule: long side <= 100, short side <= 80
            assert max(h, w) <= 100 and min(h, w) <= 80
            assert s.batch_input_shape == tuple(x.shape[2:])
            boxes = s.gt_instances.bboxes
            assert ((boxes[:, 2:] <= torch.tensor([w, h]) + 1e-3).all()
                    and (boxes[:, :2] >= -1e-3).all())
