"""A tiny quickstart-like detector trained for a few iterations, once per
test session, for the tools tests (inference, export, plots, show-dir)."""
import argparse
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart" / "retinanet_mobilenetv3_fpn_synth.py"

TENSORBOARD = ROOT / "configs" / "_base_" / "runtime" / "tensorboard.py"

TINY_CONFIG = '''
_base_ = [{quickstart!r}, {tensorboard!r}]
image_size = 64
data_root = {data!r}
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(64, 64), keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(64, 64), keep_ratio=True),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, num_images=8, image_size=64, max_objects=3,
                 min_object_size=8, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, num_images=4, image_size=64, max_objects=3,
                 min_object_size=8, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type="CocoMetric", classwise=False)]
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=2, val_interval=1)
param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(type="LoggerHook", interval=1),
                     checkpoint=dict(type="CheckpointHook", interval=2))
custom_hooks = []
# every anchor above score 0.0 survives to NMS so an early model has boxes
model = dict(bbox_head=dict(test_cfg=dict(score_thr=0.0, nms_pre=200, max_per_img=20)))
'''


def write_tiny_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_retinanet.py"
    path.write_text(TINY_CONFIG.format(quickstart=str(QUICKSTART), tensorboard=str(TENSORBOARD),
                                       data=str(folder / "data")))
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(config, checkpoint, work_dir)`` of a tiny detector trained 2 epochs
    of 2 iterations (with validation after each epoch), logged to the local
    scalars JSON and to TensorBoard."""
    from toolbox.engine.launch import train
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny_run")
    config = write_tiny_config(folder)
    work_dir = folder / "work_dir"
    train(argparse.Namespace(config=str(config), work_dir=str(work_dir), resume=False,
                             cfg_options=None, launcher="none", local_rank=0))
    torch.set_num_threads(previous)
    checkpoint = work_dir / "epoch_2.pth"
    assert checkpoint.is_file(), os.listdir(work_dir)
    return config, checkpoint, work_dir


@pytest.fixture(scope="session")
def tool():
    """``tool('infer')`` -> the module ``tools/infer.py`` (tools/ is no package)."""
    import importlib.util
    loaded = {}

    def load(name):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"tools_{name}",
                                                          ROOT / "tools" / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]
    return load
