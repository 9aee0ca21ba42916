"""validate_config refuses a model whose num_classes disagrees with the
training dataset, before anything is built."""
from pathlib import Path

import pytest
from mmengine.config import Config

from toolbox.engine.runner import build_runner, validate_config
from toolbox.errors import ConfigArgumentError

ROOT = Path(__file__).resolve().parents[2]
DETR_SMALL = ROOT / "configs" / "detr" / "detr_small_synth.py"


def test_mismatch_is_refused_before_building(tmp_path, monkeypatch):
    import toolbox.engine.runner as runner_module
    cfg = Config.fromfile(str(DETR_SMALL))
    cfg.model.bbox_head.num_classes = 80
    cfg.work_dir = str(tmp_path / "work")
    cfg.train_dataloader.dataset.data_root = str(tmp_path / "data")
    built = []
    monkeypatch.setattr(runner_module.Runner, "from_cfg", lambda c: built.append(c))
    with pytest.raises(ConfigArgumentError) as info:
        build_runner(cfg)
    message = str(info.value)
    assert "model.bbox_head.num_classes" in message and "80" in message
    assert "6 classes" in message and "SyntheticCocoDataset" in message
    assert not built and not (tmp_path / "data").exists()  # nothing generated or built


def test_metainfo_override_and_wrapped_datasets():
    cfg = Config.fromfile(str(DETR_SMALL))
    cfg.train_dataloader.dataset.metainfo = dict(classes=("circle", "square"))
    with pytest.raises(ConfigArgumentError, match=r"is 6 but the training dataset has 2 classes "
                                                  r"\(from train_dataloader\.dataset\.metainfo"):
        validate_config(cfg)
    cfg.model.bbox_head.num_classes = 2
    validate_config(cfg)
    cfg = Config.fromfile(str(DETR_SMALL))
    cfg.train_dataloader.dataset = dict(type="RepeatDataset", times=2,
                                        dataset=dict(cfg.train_dataloader.dataset))
    cfg.model.bbox_head.num_classes = 5
    with pytest.raises(ConfigArgumentError, match=r"train_dataloader\.dataset\.dataset\.type"):
        validate_config(cfg)


def test_matching_or_unknown_class_counts_pass():
    validate_config(Config.fromfile(str(DETR_SMALL)))
    cfg = Config.fromfile(str(DETR_SMALL))
    cfg.train_dataloader.dataset = dict(type="CocoDataset", ann_file="x.json", data_root="/nowhere")
    cfg.model.bbox_head.num_classes = 80  # COCO reads its classes from the file: not checked here
    validate_config(cfg)
