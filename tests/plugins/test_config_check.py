"""Every config mistake is reported before anything is built (issue 15, item 3):
the whole model tree, the pipelines, hooks and optimiser settings, and the
values constructors reject, each named by config key path and file."""
from pathlib import Path

import pytest
from mmengine.config import Config

from toolbox.config_check import ConfigValueError, check_config
from toolbox.errors import ConfigArgumentError, ToolboxError, UnknownComponentError
from toolbox.registry import NECKS
from toolbox.testing.fixtures import toolbox_plugins  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart" / "retinanet_mobilenetv3_fpn_synth.py"

CBAM_PLUGIN = """
from torch import nn
from toolbox.models.necks.fpn import FPN
from toolbox.plugins import hookimpl

class CBAMFPN(FPN):
    def __init__(self, in_channels, out_channels, in_strides, kernel_size=7, **fpn):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, in_strides, **fpn)

@hookimpl
def toolbox_necks():
    return [CBAMFPN]
"""


def config(tmp_path, body: str) -> Config:
    path = tmp_path / "my_config.py"
    path.write_text(f"_base_ = [{str(QUICKSTART)!r}]\n{body}\n")
    return Config.fromfile(str(path))


@pytest.mark.parametrize("body, key, words", [
    ("model = dict(neck=dict(type='FPNN'))", "model.neck.type", ["unknown neck 'FPNN'",
                                                                 "Did you mean 'FPN'"]),
    ("model = dict(bbox_head=dict(loss_cls=dict(gama=2.0)))", "model.bbox_head.loss_cls.gama",
     ["loss 'FocalLoss'", "Did you mean 'gamma'"]),
    ("model = dict(bbox_head=dict(loss_bbox=dict(type='GIOULoss')))",
     "model.bbox_head.loss_bbox.type", ["unknown loss 'GIOULoss'", "GIoULoss"]),
    ("model = dict(backbone=dict(frozen_stage=1))", "model.backbone.frozen_stage",
     ["backbone 'MobileNetV3'", "Did you mean 'frozen_stages'"]),
    ("model = dict(bbox_head=dict(assigner=dict(pos_iou_thres=0.5)))",
     "model.bbox_head.assigner.pos_iou_thres", ["MaxIoUAssigner", "Did you mean 'pos_iou_thr'"]),
    ("train_pipeline = [dict(type='LoadImage'), dict(type='RandomFlp', prob=0.5)]\n"
     "train_dataloader = dict(dataset=dict(pipeline=train_pipeline))",
     "train_dataloader.dataset.pipeline[1].type", ["unknown transform 'RandomFlp'",
                                                   "RandomFlip"]),
    ("optim_wrapper = dict(optimizer=dict(lrr=0.1))", "optim_wrapper.optimizer.lrr",
     ["optimizer 'AdamW'", "Did you mean 'lr'"]),
    ("custom_hooks = [dict(type='ProgresBarHook')]", "custom_hooks[0].type",
     ["unknown hook 'ProgresBarHook'", "ProgressBarHook"]),
    ("param_scheduler = [dict(type='LinearLR', start_factr=0.1)]", "param_scheduler[0].start_factr",
     ["parameter scheduler 'LinearLR'", "start_factor"]),
    ("train_dataloader = dict(dataset=dict(num_image=4))", "train_dataloader.dataset.num_image",
     ["dataset 'SyntheticCocoDataset'", "Did you mean 'num_images'"]),
    ("val_evaluator = [dict(type='VOCMetrics')]", "val_evaluator[0].type",
     ["unknown metric 'VOCMetrics'", "VOCMetric"]),
])
def test_nested_mistakes_name_the_key_path_and_file(tmp_path, body, key, words):
    with pytest.raises(ToolboxError) as info:
        check_config(config(tmp_path, body))
    msg = str(info.value)
    assert f"config key '{key}'" in msg
    assert "my_config.py" in msg
    for word in words:
        assert word in msg


def test_all_problems_are_reported_at_once(tmp_path):
    cfg = config(tmp_path, "model = dict(neck=dict(type='FPNN'), "
                           "bbox_head=dict(loss_cls=dict(gama=2.0)))")
    with pytest.raises(UnknownComponentError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith("2 problems in the config")
    assert "model.neck.type" in msg and "model.bbox_head.loss_cls.gama" in msg


def test_a_rejected_value_names_component_key_path_and_file(tmp_path, toolbox_plugins):
    toolbox_plugins.add("toolbox-cbam", "0.1.0", "cbam_plugin", CBAM_PLUGIN, ep_name="cbam")
    cfg = config(tmp_path, "model = dict(neck=dict(type='CBAMFPN', kernel_size=6))")
    with pytest.raises(ConfigValueError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert "neck 'CBAMFPN'" in msg
    assert "config key 'model.neck.kernel_size'" in msg
    assert "my_config.py" in msg and "kernel_size must be odd, got 6" in msg
    assert isinstance(info.value, ValueError)  # still a ValueError for old callers


def test_rejected_transform_value_is_named(tmp_path):
    cfg = config(tmp_path, "train_pipeline = [dict(type='LoadImage'), "
                           "dict(type='RandomFlip', prob=1.5)]\n"
                           "train_dataloader = dict(dataset=dict(pipeline=train_pipeline))")
    with pytest.raises((ConfigValueError, ConfigArgumentError)) as info:
        check_config(cfg)
    msg = str(info.value)
    assert "transform 'RandomFlip'" in msg and "train_dataloader.dataset.pipeline[1]" in msg


def test_build_runner_reports_before_anything_is_built(tmp_path, toolbox_plugins):
    from toolbox.engine.runner import build_runner
    toolbox_plugins.add("toolbox-cbam", "0.1.0", "cbam_plugin", CBAM_PLUGIN, ep_name="cbam")
    cfg = config(tmp_path, "model = dict(neck=dict(type='CBAMFPN', kernel_size=6))")
    cfg.work_dir = str(tmp_path / "work")
    with pytest.raises(ConfigValueError, match="model.neck.kernel_size"):
        build_runner(cfg)
    assert not (tmp_path / "work").exists()  # no runner, no logs, no environment dump


def test_the_shipped_quickstart_config_passes(tmp_path):
    check_config(Config.fromfile(str(QUICKSTART)))


def test_direct_builds_name_the_component(toolbox_plugins):
    toolbox_plugins.add("toolbox-cbam", "0.1.0", "cbam_plugin", CBAM_PLUGIN, ep_name="cbam")
    with pytest.raises(ConfigValueError) as info:
        NECKS.build(dict(type="CBAMFPN", in_channels=(8, 16), out_channels=8,
                         in_strides=(8, 16), kernel_size=4))
    assert "neck 'CBAMFPN'" in str(info.value) and "'kernel_size'" in str(info.value)


def test_kwargs_handed_to_a_builtin_parent_are_checked_against_it(tmp_path, toolbox_plugins):
    toolbox_plugins.add("toolbox-cbam", "0.1.0", "cbam_plugin", CBAM_PLUGIN, ep_name="cbam")
    cfg = config(tmp_path, "model = dict(neck=dict(type='CBAMFPN', num_out=5))")
    with pytest.raises(ConfigArgumentError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert "config key 'model.neck.num_out'" in msg and "Did you mean 'num_outs'" in msg


HEAD_PLUGIN = """
from toolbox.models.heads.retina_head import RetinaHead
from toolbox.plugins import hookimpl

class ScaledRetinaHead(RetinaHead):
    def __init__(self, num_classes, in_channels, init_scale=1.0, **retina):
        super().__init__(num_classes, in_channels, **retina)

@hookimpl
def toolbox_heads():
    return [ScaledRetinaHead]
"""


def test_parts_of_a_plugin_head_subclass_are_checked(tmp_path, toolbox_plugins):
    toolbox_plugins.add("scaled-head", "0.1.0", "scaled_head", HEAD_PLUGIN)
    cfg = config(tmp_path, "model = dict(bbox_head=dict(type='ScaledRetinaHead', "
                           "assigner=dict(neg_iou_thresh=0.4)))")
    with pytest.raises(ConfigArgumentError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert "model.bbox_head.assigner.neg_iou_thresh" in msg and "neg_iou_thr" in msg


def test_a_filled_in_argument_is_not_blamed_on_the_config(tmp_path):
    with pytest.raises(ConfigValueError) as info:
        check_config(config(tmp_path, "model = dict(neck=None)"))
    msg = str(info.value)
    assert "head 'RetinaHead' at config key 'model.bbox_head' (config file" in msg
    assert "'in_channels' is not set in the config but filled in by the toolbox" in msg
