"""``amp=True``: every detector type and the segmentor train under bf16
autocast on a CPU through the real runner, with the heads' outputs and the
losses' inputs in fp32 (see toolbox/engine/amp.py)."""
import pytest
import torch
from torch import nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from toolbox.engine.amp import MixedPrecisionOptimWrapper
from toolbox.engine.runner import build_runner
from toolbox.registry import HEADS, LOSSES

from tiny_runs import tiny_run_config

CONFIGS = {
    "single_stage": "configs/quickstart/retinanet_mobilenetv3_fpn_synth.py",
    "two_stage": "configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_synth.py",
    "detr": "configs/detr/detr_r50_synth.py",  # the paper head (the CPU recipe trains via DETRHead.loss)
    "segmentor": "configs/unetr/unetr_2d_synth.py",
}


def _record(out):
    """A forward hook adding the dtypes of a module's inputs and outputs to ``out``."""
    def hook(module, args, output):
        _dtypes((args, output), out)
    return hook


def _dtypes(value, out):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        out.add(value.dtype)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _dtypes(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _dtypes(v, out)
    return out


@pytest.mark.parametrize("kind", CONFIGS)
def test_bf16_training_on_cpu(kind, tmp_path, tmp_path_factory, one_thread):
    data = tmp_path_factory.getbasetemp() / "amp_data" / kind
    cfg = tiny_run_config(CONFIGS[kind], tmp_path / "wd", data, amp=True)
    runner = build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    recorder = _Recorder()
    runner.register_hook(recorder, priority="LOWEST")  # after the runner's MixedPrecisionHook
    seen, losses_logged = recorder.seen, recorder.losses
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    runner.train()

    assert isinstance(runner.optim_wrapper, MixedPrecisionOptimWrapper)
    assert runner.optim_wrapper.cast_dtype == torch.bfloat16
    assert seen["backbone"] == {torch.bfloat16}, "autocast was not active"
    assert seen["heads"] == {torch.float32}, seen["heads"]
    assert seen["losses"] and seen["losses"] <= {torch.float32}, seen["losses"]
    assert len(losses_logged) == 2 and all(torch.isfinite(torch.tensor(losses_logged)))
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype for k, v in before.items())  # weights stay fp32
    moved = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    assert len(moved) > len(before) // 3
    assert (tmp_path / "wd" / "epoch_1.pth").is_file()


class _Recorder(Hook):
    """Records the dtypes leaving the backbone's convs / linear layers, leaving the heads (after the
    fp32 hooks, which run first) and entering/leaving the losses; and the
    training losses."""

    def __init__(self):
        self.seen = dict(backbone=set(), heads=set(), losses=set())
        self.losses = []

    def before_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        heads = tuple(HEADS.get(n) for n in HEADS.names())
        losses = tuple(LOSSES.get(n) for n in LOSSES.names())
        for module in model.backbone.modules():  # the backbone's matrix products
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                module.register_forward_hook(
                    lambda m, a, out: _dtypes(out, self.seen["backbone"]) and None)
        for module in model.modules():
            if isinstance(module, heads):
                module.register_forward_hook(
                    lambda m, a, out: _dtypes(out, self.seen["heads"]) and None)
            if isinstance(module, losses):
                module.register_forward_hook(_record(self.seen["losses"]))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs["loss"].detach()))
