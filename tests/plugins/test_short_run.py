"""The short-run switch (issue 15, item 7): ``--cfg-options short_run.max_iters=N
short_run.num_images=M`` cuts training and every loader short. (The scaffold
test runs it through ``tools/train.py``.)"""
from pathlib import Path

import pytest
from mmengine.config import Config

from toolbox.short_run import apply_short_run_from_cfg as prepare_short_run
from toolbox.errors import ConfigArgumentError

QUICKSTART = (Path(__file__).resolve().parents[2] / "configs" / "quickstart"
              / "retinanet_mobilenetv3_fpn_synth.py")


def test_short_run_key_covers_training_and_every_loader():
    cfg = Config.fromfile(str(QUICKSTART))
    cfg.merge_from_dict({"short_run.max_iters": 3, "short_run.num_images": 5})
    prepare_short_run(cfg)
    assert "short_run" not in cfg
    assert cfg.train_cfg == dict(type="IterBasedTrainLoop", max_iters=3, val_interval=3)
    assert cfg.param_scheduler == []
    assert cfg.default_hooks.checkpoint.interval == 3
    assert cfg.default_hooks.checkpoint.by_epoch is False
    for split in ("train", "val", "test"):
        loader = cfg[f"{split}_dataloader"]
        assert loader.dataset.num_images == 5
        assert loader.batch_size == 5 and loader.num_workers == 0
        assert loader.persistent_workers is False


def test_wrapped_and_unlimitable_datasets():
    from mmengine.dataset import BaseDataset
    cfg = Config(dict(train_dataloader=dict(batch_size=8, dataset=dict(
        type="RepeatDataset", times=2, dataset=dict(type=BaseDataset, ann_file="x.json"))),
        val_dataloader=dict(batch_size=2, dataset=dict(type="CocoDataset", ann_file="y.json")),
        test_dataloader=dict(batch_size=2, dataset=dict(type="SegDataset", img_dir="x")),
        short_run=dict(num_images=4)))
    with pytest.warns(UserWarning, match="test_dataloader.dataset .'SegDataset'. takes neither"):
        prepare_short_run(cfg)
    assert cfg.train_dataloader.dataset.dataset.indices == 4
    assert cfg.val_dataloader.dataset.num_images == 4
    assert cfg.train_dataloader.batch_size == 4 and cfg.val_dataloader.batch_size == 2


def test_unknown_short_run_key_is_refused():
    cfg = Config(dict(short_run=dict(max_iter=3)))
    with pytest.raises(ConfigArgumentError, match="short_run.*max_iter.*max_iters"):
        prepare_short_run(cfg)
