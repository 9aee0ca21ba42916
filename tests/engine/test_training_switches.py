"""The training switches (toolbox/engine/switches.py) through the real runner
on toy models: gradient accumulation, LR scaling, EMA (validated, saved,
resumed), save_best, early stopping, the progress bar, and their errors."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from toolbox.checkpoint_io import load_checkpoint
from toolbox.engine.runner import build_runner
from toolbox.engine.switches import configure_switches
from toolbox.errors import ConfigArgumentError

from switch_toys import RecordRun, max_abs_diff, params

TOY = Path(__file__).with_name("toy_config.py")
VAL = dict(val_dataloader=dict(dataset=dict(type="ToyDataset", size=8, seed=1), batch_size=4,
                               num_workers=0, sampler=dict(type="DefaultSampler", shuffle=False),
                               collate_fn=dict(type="default_collate")),
           val_cfg=dict(type="ValLoop"), val_evaluator=dict(type="ToyMSE"))


def toy_cfg(work_dir, *, model="ToyLinear", epochs=1, batch=4, size=32, val=False,
            shuffle=False, **options) -> Config:
    cfg = Config.fromfile(str(TOY))
    cfg.model = dict(type=model) if model == "ToyLinear" else cfg.model
    cfg.train_dataloader.batch_size = batch
    cfg.train_dataloader.dataset.size = size
    cfg.train_dataloader.sampler.shuffle = shuffle
    cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
    cfg.optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.05))
    cfg.param_scheduler = []
    if val:
        cfg.merge_from_dict(VAL)
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = Path(work_dir).name
    return cfg


def train(cfg, *hooks, resume=False):
    if resume:
        cfg.experiment_name += "_resumed"  # a new run (logger, scope) in the same work dir
    runner = build_runner(cfg, resume=resume)
    for hook in hooks:
        runner.register_hook(hook)
    runner.train()
    return runner


# -- gradient accumulation and LR scaling ------------------------------------
def test_accumulating_k_batches_equals_one_batch_k_times_larger(tmp_path):
    """4 batches of 2, accumulated, make the same 2 optimizer steps as batches of 8."""
    small = train(toy_cfg(tmp_path / "acc", batch=2, size=16,
                          optim_wrapper=dict(accumulative_counts=4)))
    large = train(toy_cfg(tmp_path / "large", batch=8, size=16))
    plain = train(toy_cfg(tmp_path / "plain", batch=2, size=16))
    assert small.optim_wrapper._accumulative_counts == 4
    diff = max_abs_diff(params(small), params(large))
    assert diff < 1e-6, diff
    assert max_abs_diff(params(plain), params(large)) > 1e-3  # without it: 8 steps, not 2


def test_accumulate_flag_and_bad_value(tmp_path):
    from argparse import Namespace
    from toolbox.engine.switches import apply_cli_switches
    cfg = toy_cfg(tmp_path / "a")
    apply_cli_switches(cfg, Namespace(accumulate=3))
    assert cfg.optim_wrapper.accumulative_counts == 3
    cfg.optim_wrapper.accumulative_counts = 0
    with pytest.raises(ConfigArgumentError, match="optim_wrapper.accumulative_counts"):
        configure_switches(cfg)


def test_auto_scale_lr_counts_world_batch_and_accumulation(tmp_path):
    record = RecordRun()
    cfg = toy_cfg(tmp_path / "scale", batch=4, size=16,
                  optim_wrapper=dict(accumulative_counts=2),
                  auto_scale_lr=dict(enable=True, base_batch_size=16))
    train(cfg, record)
    assert record.lrs[0] == pytest.approx(0.05 * (1 * 4 * 2) / 16)

    record = RecordRun()
    train(toy_cfg(tmp_path / "off", batch=4, size=16,
                  auto_scale_lr=dict(enable=False, base_batch_size=16)), record)
    assert record.lrs[0] == pytest.approx(0.05)


def test_auto_scale_lr_without_base_batch_size_names_the_key(tmp_path):
    cfg = toy_cfg(tmp_path / "x", auto_scale_lr=dict(enable=True))
    with pytest.raises(ConfigArgumentError, match="auto_scale_lr.base_batch_size"):
        build_runner(cfg)


# -- EMA ------------------------------------------------------------------------
EMA = dict(ema=dict(ema_type="ExponentialMovingAverage", momentum=0.3))


def test_ema_is_validated_saved_and_resumed(tmp_path):
    record = RecordRun()
    full = train(toy_cfg(tmp_path / "full", epochs=3, val=True, **EMA), record)
    ema_hook = next(h for h in full.hooks if type(h).__name__ == "EMAHook")
    ema = {k[len("module."):]: v for k, v in ema_hook.ema_model.state_dict().items()
           if k.startswith("module.")}
    raw = params(full)
    assert max_abs_diff(ema, raw) > 1e-4  # the average is not the last weights
    # validation ran on the EMA weights
    assert max_abs_diff(record.val_params[3], ema) == 0
    # the checkpoint's state_dict holds the EMA weights (ready for inference),
    # its ema_state_dict the raw ones, for resuming
    ckpt = load_checkpoint(tmp_path / "full" / "epoch_3.pth")
    assert max_abs_diff(ckpt["state_dict"], ema) == 0
    assert "ema_state_dict" in ckpt

    # interrupted after epoch 2, resumed: the same EMA and raw weights at the end
    train(toy_cfg(tmp_path / "part", epochs=2, val=True, **EMA))
    resumed = train(toy_cfg(tmp_path / "part", epochs=3, val=True, **EMA), resume=True)
    again = load_checkpoint(tmp_path / "part" / "epoch_3.pth")
    assert resumed.epoch == 3
    assert max_abs_diff(again["state_dict"], ckpt["state_dict"]) == 0
    assert max_abs_diff(params(resumed), raw) == 0


def test_ema_switch_values(tmp_path):
    cfg = toy_cfg(tmp_path / "e", ema=True)
    configure_switches(cfg)
    hook = [h for h in cfg.custom_hooks if h["type"] == "EMAHook"]
    assert hook == [dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002,
                         priority=49)]
    with pytest.raises(ConfigArgumentError, match="ema.momentum"):
        configure_switches(toy_cfg(tmp_path / "f", ema=dict(momentum=2.0)))


# -- best checkpoint, early stopping, progress bar ------------------------------
def test_save_best_keeps_the_best_checkpoint(tmp_path):
    train(toy_cfg(tmp_path / "best", epochs=2, val=True, save_best=dict(
        metric="toy/mse", rule="less")))
    best = list((tmp_path / "best").glob("best_toy_mse_epoch_*.pth"))
    assert len(best) == 1


def test_early_stopping_stops_when_the_metric_stalls(tmp_path):
    runner = train(toy_cfg(tmp_path / "stop", epochs=6, val=True,
                           early_stopping=dict(monitor="toy/constant", patience=2,
                                               rule="greater")))
    # epoch 1 sets the best, epochs 2 and 3 do not improve it: stop after 3
    assert runner.epoch == 3
    assert not (tmp_path / "stop" / "epoch_4.pth").exists()


def test_save_best_rule_is_inferred_or_asked_for(tmp_path):
    cfg = toy_cfg(tmp_path / "a", save_best="coco/bbox_mAP")
    configure_switches(cfg)
    assert cfg.default_hooks.checkpoint.save_best == "coco/bbox_mAP"
    with pytest.raises(ConfigArgumentError, match="save_best.rule"):
        configure_switches(toy_cfg(tmp_path / "b", save_best="toy/mse"))


def test_early_stopping_needs_a_monitor(tmp_path):
    with pytest.raises(ConfigArgumentError, match="early_stopping.monitor"):
        configure_switches(toy_cfg(tmp_path / "m", early_stopping=dict(patience=2)))
    cfg = toy_cfg(tmp_path / "n", save_best=dict(metric="toy/mse", rule="less"),
                  early_stopping=dict(patience=2))
    configure_switches(cfg)
    stop = [h for h in cfg.custom_hooks if h["type"] == "EarlyStoppingHook"][0]
    assert (stop["monitor"], stop["rule"], stop["patience"]) == ("toy/mse", "less", 2)
    with pytest.raises(ConfigArgumentError, match="early_stopping.rule"):
        configure_switches(toy_cfg(tmp_path / "o", early_stopping=dict(monitor="toy/mse")))


def test_progress_bar_shows_eta_rate_loss_and_metric(tmp_path, capsys):
    train(toy_cfg(tmp_path / "bar", epochs=2, val=True, val_evaluator=dict(type="ToyMSE"),
                  custom_hooks=[dict(type="ProgressBarHook", mininterval=0,
                                     metric="toy/mse")]))
    err = capsys.readouterr().err
    last_train = [line for line in err.replace("\r", "\n").splitlines()
                  if line.startswith("train") and "16/16" in line][-1]
    assert "<00:00" in last_train  # elapsed<remaining
    assert "it/s" in last_train or "s/it" in last_train
    assert "loss=" in last_train and "mse=" in last_train, last_train


def test_cli_flags_set_the_config_keys(tmp_path):
    from toolbox.engine.launch import add_train_args
    import argparse
    args = add_train_args(argparse.ArgumentParser()).parse_args(
        ["cfg.py", "--amp", "--amp-fp32", "backbone", "neck", "--ema", "0.001", "--accumulate", "2", "--auto-scale-lr",
         "--base-batch-size", "32", "--save-best", "coco/bbox_mAP", "--early-stopping", "4",
         "--sync-bn"])
    from toolbox.engine.switches import apply_cli_switches
    cfg = toy_cfg(tmp_path / "c")
    apply_cli_switches(cfg, args)
    assert cfg.amp is True and cfg.ema == dict(momentum=0.001)
    assert cfg.amp_fp32_modules == ["backbone", "neck"]
    assert cfg.optim_wrapper.accumulative_counts == 2
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=32)
    assert cfg.save_best == "coco/bbox_mAP" and cfg.early_stopping == dict(patience=4)
    assert cfg.sync_bn is True


# -- AMP wrapper ------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (bf16) path")
def test_amp_on_cpu_is_bf16_without_loss_scaling(tmp_path):
    runner = train(toy_cfg(tmp_path / "amp", amp=True))
    wrapper = runner.optim_wrapper
    assert type(wrapper).__name__ == "MixedPrecisionOptimWrapper"
    assert wrapper.cast_dtype == torch.bfloat16 and not wrapper.loss_scaler.is_enabled()
    model = runner.model
    with wrapper.optim_context(model):
        assert model.net[0](torch.randn(2, 4)).dtype == torch.bfloat16
    ckpt = load_checkpoint(tmp_path / "amp" / "epoch_1.pth")
    assert ckpt["optimizer"]["loss_scaler"] == {}
    with pytest.raises(ValueError, match="'amp' is 'float16'"):
        build_runner(toy_cfg(tmp_path / "fp16", amp="float16"))
    cfg = toy_cfg(tmp_path / "fp16w", amp=True)
    cfg.optim_wrapper.dtype = "float16"
    with pytest.raises(ValueError, match="optim_wrapper.dtype"):
        train(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (bf16) path")
def test_amp_fp32_modules_run_wholly_in_fp32(tmp_path):
    import copy
    runner = train(toy_cfg(tmp_path / "amp32", amp=True, amp_fp32_modules=["net"]))
    model, wrapper = runner.model, runner.optim_wrapper
    keys = set(model.state_dict())
    with wrapper.optim_context(model):
        assert model.net(torch.randn(2, 4)).dtype == torch.float32
        assert copy.deepcopy(model).net(torch.randn(2, 4)).dtype == torch.float32  # EMA copies
        assert torch.nn.Linear(4, 2)(torch.randn(2, 4)).dtype == torch.bfloat16  # others: bf16
    assert set(model.state_dict()) == keys  # a class swap, not a wrapper
    with pytest.raises(ValueError, match="amp_fp32_modules.*no submodule 'trunk'"):
        train(toy_cfg(tmp_path / "bad", amp=True, amp_fp32_modules=["trunk"]))
    with pytest.raises(ConfigArgumentError, match="amp_fp32_modules"):
        configure_switches(toy_cfg(tmp_path / "str", amp=True, amp_fp32_modules="net"))


def test_amp_key_errors(tmp_path):
    with pytest.raises(ValueError, match="config key 'amp'"):
        configure_switches(toy_cfg(tmp_path / "a", amp="half"))
    cfg = toy_cfg(tmp_path / "b", amp=True)
    cfg.optim_wrapper.type = "SomethingElse"
    with pytest.raises(ValueError, match="optim_wrapper.type"):
        configure_switches(cfg)


def test_tools_test_with_the_switch_keys_evaluates_the_ema_weights(tmp_path):
    """tools/test.py on a config with ema/amp/save_best/early_stopping set: it
    runs (no training parts built) and scores the checkpoint's EMA weights as
    the last validation did."""
    import argparse

    from toolbox.engine.launch import test as run_test
    keys = dict(EMA, amp=True, save_best=dict(metric="toy/mse", rule="less"),
                early_stopping=dict(monitor="toy/mse", patience=3, rule="less"))
    runner = train(toy_cfg(tmp_path / "run", epochs=2, val=True, **keys))
    last_val = runner.message_hub.get_scalar("val/toy/mse").current()
    config = tmp_path / "config.py"
    cfg = toy_cfg(tmp_path / "run", epochs=2, val=True, **keys)
    cfg.test_dataloader, cfg.test_cfg = cfg.val_dataloader, dict(type="TestLoop")
    cfg.test_evaluator = cfg.val_evaluator
    cfg.experiment_name = "tested"
    cfg.dump(str(config))
    args = argparse.Namespace(config=str(config), checkpoint=str(tmp_path / "run" / "epoch_2.pth"),
                              work_dir=str(tmp_path / "test"), cfg_options=None,
                              launcher="none", local_rank=0, show_dir=None, fuse_conv_bn=False)
    metrics = run_test(args)
    assert metrics["toy/mse"] == pytest.approx(last_val, rel=1e-6)
