"""det_collate: padding to the batch's size, batch_input_shape, registry lookup."""
import torch
from mmengine.registry import FUNCTIONS as MME_FUNCTIONS
from mmengine.structures import InstanceData
from torch.utils.data import DataLoader

from toolbox.datasets._collate import det_collate
from toolbox.registry import DATASETS, FUNCTIONS
from toolbox.structures import DetDataSample


def item(h, w, fill, n_masks=1):
    s = DetDataSample(metainfo=dict(img_shape=(h, w)))
    s.gt_instances = InstanceData(bboxes=torch.zeros(n_masks, 4),
                                  labels=torch.zeros(n_masks, dtype=torch.long),
                                  masks=torch.ones(n_masks, h, w, dtype=torch.bool))
    return dict(inputs=torch.full((3, h, w), float(fill)), data_samples=s)


def test_pads_to_batch_max_rounded_to_divisor():
    batch = [item(50, 70, 1), item(64, 64, 2), item(33, 100, 3, n_masks=0)]
    out = det_collate(batch, size_divisor=32, pad_value=-1)
    x = out["inputs"]
    assert x.shape == (3, 3, 64, 128)  # max h 64, max w 100 -> 128
    assert (x[0, :, :50, :70] == 1).all() and (x[0, :, 50:] == -1).all()
    assert (x[0, :, :, 70:] == -1).all() and (x[2, :, :33, :100] == 3).all()
    samples = out["data_samples"]
    assert isinstance(samples, list) and len(samples) == 3
    assert all(s.batch_input_shape == (64, 128) for s in samples)
    assert samples[0].img_shape == (50, 70)
    m = samples[0].gt_instances.masks
    assert m.shape == (1, 64, 128) and m.sum() == 50 * 70
    assert samples[2].gt_instances.masks.shape == (0, 64, 128)
    assert det_collate([item(64, 64, 0)])["inputs"].shape == (1, 3, 64, 64)
    assert det_collate([item(65, 64, 0)], size_divisor=1)["inputs"].shape == (1, 3, 65, 64)


def test_registered_for_configs():
    assert FUNCTIONS.get("det_collate") is det_collate
    # what mmengine's runner does with collate_fn=dict(type='toolbox.det_collate')
    assert MME_FUNCTIONS.get("toolbox.det_collate") is det_collate


def test_dataloader_with_synthetic_dataset(tiny_synthetic):
    ds = DATASETS.build(dict(
        type="SyntheticCocoDataset", data_root=tiny_synthetic, split="val", num_images=8,
        image_size=96, pipeline=[
            dict(type="LoadImage"), dict(type="RandomCrop", area_range=(0.5, 1.0)),
            dict(type="Resize", scale=(100, 80)), dict(type="RandomFlip", prob=0.5),
            dict(type="ColorJitter"), dict(type="Normalize"), dict(type="Pad", size_divisor=32),
            dict(type="PackDetInputs")]))
    loader = DataLoader(ds, batch_size=4, collate_fn=det_collate)
    batches = list(loader)
    assert len(batches) == 2
    for b in batches:
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
