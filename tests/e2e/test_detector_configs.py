"""Every shipped detector config builds and trains a few iterations.

Segmentation configs (a segmentor model) are trained by
test_segmentor_configs.py instead.

Each config is loaded as a user would load it (``_base_`` inheritance), its
data shrunk to a handful of tiny synthetic images; the model takes two
optimizer steps (loss finite, weights move) and then predicts.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from toolbox.datasets.collate import det_collate
from toolbox.engine.hooks import hand_class_frequencies
from toolbox.registry import DATASETS, MODELS

from shipped_configs import shipped_configs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = shipped_configs("detection")


def tiny_batch(cfg, data_root, model):
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(num_images=4, image_size=96, data_root=str(data_root), split="train")
    for step in ds_cfg.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (96, 96)
    dataset = DATASETS.build(ds_cfg)
    # what train_step does: the model's data_preprocessor normalises and pads
    return dataset, model.data_preprocessor(det_collate([dataset[0], dataset[1]]), True)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_trains_a_few_iterations(config, tmp_path_factory, one_thread):
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    dataset, batch = tiny_batch(cfg, tmp_path_factory.getbasetemp() / "synthetic" / config.stem,
                                model)
    hand_class_frequencies(model, dataset)  # what ClassFrequencyHook does in a run
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
    with torch.no_grad():
        results = model(batch["inputs"], batch["data_samples"], mode="predict")
    assert len(results) == 2 and all("pred_instances" in r for r in results)
