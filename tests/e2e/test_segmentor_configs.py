"""Every shipped segmentation config builds, trains two steps and predicts.

Detection configs are trained by test_detector_configs.py. Each segmentation config is loaded as a user would load it
(``_base_`` inheritance). Its data is shrunk to two tiny synthetic images or
volumes (same pipeline and collate function as the config); the model takes
two optimizer steps (loss finite, weights move), then predicts the
validation items with the config's ``test_cfg``; the predictions are in each
item's original frame and go through the config's metric. A config without
data (the paper-size BTCV one) trains on random 32^3 volumes with its ViT
re-sized to that input.
"""
import random
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from toolbox.datasets.collate import seg_collate
from toolbox.registry import DATASETS, METRICS, MODELS
from toolbox.structures.seg_data_sample import SegDataSample

from shipped_configs import shipped_configs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = shipped_configs("segmentation")
TINY_DATA = {"SyntheticVolumeDataset": dict(num_volumes=2, size=32),
             "SyntheticSegDataset": dict(num_images=2, image_size=64)}


def _tiny_dataset(ds_cfg, data_root):
    ds_cfg = dict(ds_cfg)
    ds_cfg.update(TINY_DATA[ds_cfg["type"]], data_root=str(data_root))
    return DATASETS.build(ds_cfg)


def _random_volumes(cfg):
    """Random 32^3 volumes with labels, for a config without data."""
    cfg.model.backbone.img_size = 32
    cfg.model.test_cfg = dict(mode="whole")
    k = cfg.model.decode_head.num_classes
    shape = (32, 32, 32)
    items = [dict(inputs=torch.randn(1, *shape),
                  data_samples=SegDataSample(gt_sem_seg=torch.randint(0, k, shape),
                                             ori_gt_sem_seg=torch.randint(0, k, shape),
                                             metainfo=dict(img_shape=shape, ori_shape=shape)))
             for _ in range(2)]
    return items, items, {}, None, None


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_trains_and_predicts(config, tmp_path_factory, one_thread):
    cfg = Config.fromfile(str(config))
    root = tmp_path_factory.getbasetemp() / "seg_data" / config.stem
    random.seed(0)  # the random crops and flips of the pipelines
    torch.manual_seed(0)
    if "train_dataloader" in cfg:
        train_set = _tiny_dataset(cfg.train_dataloader.dataset, root)
        val_set = _tiny_dataset(cfg.val_dataloader.dataset, root)
        train_items, val_items = [train_set[0], train_set[1]], [val_set[0], val_set[1]]
        collate_args = {k: v for k, v in cfg.train_dataloader.collate_fn.items() if k != "type"}
        evaluator, meta = cfg.val_evaluator, val_set.metainfo
    else:
        train_items, val_items, collate_args, evaluator, meta = _random_volumes(cfg)
    model = MODELS.build(cfg.model)
    # what train_step / test_step do: the model's data_preprocessor pads (and normalises)
    batch = model.data_preprocessor(seg_collate(train_items, **collate_args), True)
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    model.train()
    for _ in range(2):
        losses = model(batch["inputs"], batch["data_samples"], mode="loss")
        loss = sum(v for k, v in losses.items() if "loss" in k)
        assert torch.isfinite(loss), f"{config.name}: loss {loss}"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert sum(not torch.equal(a, p) for a, p in zip(before, params)) > len(params) // 2

    model.eval()
    val_batch = model.data_preprocessor(seg_collate(val_items, **collate_args), False)
    with torch.no_grad():
        results = model(val_batch["inputs"], val_batch["data_samples"], mode="predict")
    assert len(results) == 2
    for result in results:
        ori_shape = tuple(result.metainfo["ori_shape"])
        assert tuple(result.pred_sem_seg.shape) == ori_shape
        assert result.seg_logits.shape[1:] == ori_shape
        assert result.seg_logits.shape[0] == cfg.model.decode_head.num_classes
    if evaluator is not None:
        metric = METRICS.build(evaluator)
        metric.dataset_meta = meta
        metric.process(val_batch, results)
        scores = metric.evaluate(len(results))
        assert any("mIoU" in key for key in scores)
