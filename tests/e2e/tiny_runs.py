"""Shipped configs shrunk to a run of a few iterations through the real runner
(``build_runner``): tiny synthetic data, batch 2, no workers, no validation
unless asked for."""
from pathlib import Path

from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[2]
TINY_DATA = {"SyntheticCocoDataset": dict(num_images=4, image_size=96),
             "SyntheticSegDataset": dict(num_images=4, image_size=64)}


def _shrink_loader(loader, data_root, size):
    loader.update(batch_size=2, num_workers=0, persistent_workers=False)
    loader.dataset.update(TINY_DATA[loader.dataset.type], data_root=str(data_root))
    for step in loader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (size, size)
        if step["type"] == "RandomFlip":
            step["prob"] = 0.0


def tiny_run_config(config: str, work_dir, data_root, *, validate: bool = False,
                    epochs: int = 1, **options) -> Config:
    """``config`` (relative to the repository) shrunk to ``epochs`` epochs of
    2 iterations (4 images, batch 2); ``options`` are merged on top."""
    cfg = Config.fromfile(str(ROOT / config))
    is_seg = "decode_head" in cfg.model
    size = 64 if is_seg else 96
    _shrink_loader(cfg.train_dataloader, data_root, size)
    if is_seg:  # the ViT's position embedding is learned for one input size
        cfg.model.backbone.img_size = size
        cfg.model.test_cfg = dict(mode="whole")
    if validate:
        _shrink_loader(cfg.val_dataloader, data_root, size)
        cfg.val_dataloader.dataset.split = "train"  # reuse the 4 generated images
        cfg.val_cfg = dict(type="ValLoop")
        cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=1)
    else:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=epochs)
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.custom_hooks = []  # no progress bar in the test logs
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1)
    cfg.log_level = "WARNING"
    cfg.work_dir = str(work_dir)
    cfg.merge_from_dict(options)
    return cfg
