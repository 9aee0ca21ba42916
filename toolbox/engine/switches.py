"""The training switches: config keys first, ``tools/train.py`` flags second.

Each flag only sets its config key (see :func:`apply_cli_switches`); then
:func:`configure_switches` turns the keys into mmengine's own parts:

| config key | becomes |
| --- | --- |
| ``amp = True`` (or ``'float16'`` / ``'bfloat16'``) | ``optim_wrapper.type = 'MixedPrecisionOptimWrapper'`` (mmengine's ``AmpOptimWrapper``; bf16 on CPU) and the fp32 heads/losses of :mod:`toolbox.engine.amp` |
| ``amp_fp32_modules = ['backbone']`` | with ``amp``: those submodules run wholly in fp32 (autocast off inside them) |
| ``ema = True`` or ``dict(momentum=..., ema_type=..., ...)`` | mmengine's ``EMAHook`` (checkpointed and resumed with the model; validation and the saved ``state_dict`` use the EMA weights) |
| ``optim_wrapper.accumulative_counts = k`` | mmengine's gradient accumulation (one optimizer step per ``k`` batches) |
| ``auto_scale_lr = dict(enable=True, base_batch_size=B)`` | mmengine's linear LR scaling, by world size x batch size x ``accumulative_counts`` / ``B`` |
| ``save_best = 'coco/bbox_mAP'`` (or ``'auto'``, or ``dict(metric=..., rule=...)``) | ``default_hooks.checkpoint.save_best`` (a ``best_*.pth``) |
| ``early_stopping = dict(monitor=..., patience=..., min_delta=...)`` | mmengine's ``EarlyStoppingHook`` |
| ``sync_bn = True`` | BatchNorm layers become synchronised ones under DDP (torch's ``SyncBatchNorm`` on CUDA, :class:`~toolbox.engine.sync_bn.CPUSyncBatchNorm` over gloo) |
"""
from __future__ import annotations

from toolbox.engine.amp import configure_amp
from toolbox.errors import ConfigArgumentError

EMA_DEFAULTS = dict(ema_type="ExpMomentumEMA", momentum=0.0002, priority=49)
# min_delta: an improvement must exceed it (mmengine counts a tie as one when it is
# 0, and its default 0.1 is a tenth of the whole AP range)
EARLY_STOPPING_DEFAULTS = dict(patience=5, min_delta=1e-4)


def apply_cli_switches(cfg, args) -> None:
    """Copy ``tools/train.py``'s switch flags into their config keys."""
    if getattr(args, "amp", False):
        cfg.amp = True
    if getattr(args, "amp_fp32", None):
        cfg.amp_fp32_modules = list(args.amp_fp32)
    if getattr(args, "ema", None) is not None:
        ema = cfg.get("ema")
        ema = dict(ema) if isinstance(ema, dict) else {}
        if args.ema is not True:
            ema["momentum"] = args.ema
        cfg.ema = ema or True
    if getattr(args, "accumulate", None) is not None:
        if "optim_wrapper" not in cfg:
            raise ConfigArgumentError("--accumulate needs an 'optim_wrapper' in the config")
        cfg.optim_wrapper.accumulative_counts = args.accumulate
    if getattr(args, "auto_scale_lr", False):
        scale = dict(cfg.get("auto_scale_lr") or {})
        scale["enable"] = True
        if getattr(args, "base_batch_size", None) is not None:
            scale["base_batch_size"] = args.base_batch_size
        cfg.auto_scale_lr = scale
    if getattr(args, "save_best", None) is not None:
        cfg.save_best = args.save_best
    if getattr(args, "early_stopping", None) is not None:
        stop = dict(cfg.get("early_stopping") or {})
        stop["patience"] = args.early_stopping
        cfg.early_stopping = stop
    if getattr(args, "sync_bn", False):
        cfg.sync_bn = True


def _positive_int(value, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigArgumentError(f"config key '{key}' is {value!r}; expected a positive int")
    return value


def _configure_ema(cfg) -> None:
    ema = cfg.get("ema", None)
    if ema in (None, False):
        return
    if ema is True:
        ema = {}
    if not isinstance(ema, dict):
        raise ConfigArgumentError(f"config key 'ema' is {ema!r}; expected True, False or a "
                                  "dict of EMAHook arguments (momentum, ema_type, ...)")
    momentum = ema.get("momentum", EMA_DEFAULTS["momentum"])
    if not isinstance(momentum, (int, float)) or not 0 < momentum < 1:
        raise ConfigArgumentError(f"config key 'ema.momentum' is {momentum!r}; expected a "
                                  "number in (0, 1) (the weight of the new model, e.g. 0.0002)")
    hooks = [h for h in (cfg.get("custom_hooks") or [])
             if not (isinstance(h, dict) and h.get("type") == "EMAHook")]
    hooks.append(dict(type="EMAHook", **{**EMA_DEFAULTS, **ema}))
    cfg.custom_hooks = hooks


def _accumulation(cfg) -> int:
    wrapper = cfg.get("optim_wrapper")
    if not isinstance(wrapper, dict):
        return 1
    return _positive_int(wrapper.get("accumulative_counts", 1),
                         "optim_wrapper.accumulative_counts")


def _configure_auto_scale_lr(cfg, accumulation: int) -> None:
    scale = cfg.get("auto_scale_lr")
    if not scale or not scale.get("enable", False):
        return
    base = scale.get("base_batch_size")
    if base is None:
        raise ConfigArgumentError(
            "config key 'auto_scale_lr.base_batch_size' is not set; expected the total batch "
            "size the config's learning rate was tuned for (e.g. auto_scale_lr = "
            "dict(base_batch_size=16), or --base-batch-size 16)")
    _positive_int(base, "auto_scale_lr.base_batch_size")
    # mmengine scales by world_size x batch_size / base; count accumulated batches too
    cfg.auto_scale_lr = dict(scale, base_batch_size=base / accumulation)


def _configure_save_best(cfg) -> None:
    best = cfg.get("save_best", None)
    if best in (None, False):
        return
    if isinstance(best, dict):
        if "metric" not in best:
            raise ConfigArgumentError("config key 'save_best' is a dict without 'metric'; "
                                      "expected dict(metric='coco/bbox_mAP', rule='greater')")
        metric, rule = best["metric"], best.get("rule")
    elif isinstance(best, str):
        metric, rule = best, None
    else:
        raise ConfigArgumentError(f"config key 'save_best' is {best!r}; expected a metric "
                                  "name such as 'coco/bbox_mAP', 'auto' or a dict")
    if rule not in (None, "greater", "less"):
        raise ConfigArgumentError(f"config key 'save_best.rule' is {rule!r}; expected "
                                  "'greater' or 'less'")
    if rule is None and metric != "auto" and _infer_rule(metric) is None:
        raise ConfigArgumentError(
            f"config key 'save_best.rule' is needed: whether larger or smaller values of "
            f"{metric!r} are better cannot be told from its name; expected "
            f"save_best=dict(metric={metric!r}, rule='greater' or 'less')")
    hooks = cfg.setdefault("default_hooks", {})
    checkpoint = dict(hooks.get("checkpoint") or dict(type="CheckpointHook", interval=1))
    checkpoint["save_best"] = metric
    if rule is not None:
        checkpoint["rule"] = rule
    hooks["checkpoint"] = checkpoint


def _infer_rule(metric: str) -> str | None:
    """mmengine's CheckpointHook rule for ``metric`` (None if it cannot tell)."""
    from mmengine.hooks import CheckpointHook
    name = metric.lower()
    greater = [k.lower() for k in CheckpointHook._default_greater_keys]
    less = [k.lower() for k in CheckpointHook._default_less_keys]
    if name in greater or (name not in less and any(k in name for k in greater)):
        return "greater"
    if name in less or any(k in name for k in less):
        return "less"
    return None


def _configure_early_stopping(cfg) -> None:
    stop = cfg.get("early_stopping", None)
    if stop in (None, False):
        return
    stop = {} if stop is True else stop
    if not isinstance(stop, dict):
        raise ConfigArgumentError(f"config key 'early_stopping' is {stop!r}; expected a dict "
                                  "(monitor, patience, min_delta, rule)")
    stop = {**EARLY_STOPPING_DEFAULTS, **stop}
    if "monitor" not in stop:
        best = cfg.get("save_best")
        best = best.get("metric") if isinstance(best, dict) else best
        if not isinstance(best, str) or best == "auto":
            raise ConfigArgumentError(
                "config key 'early_stopping.monitor' is not set; expected a validation "
                "metric name such as 'coco/bbox_mAP' (or set save_best to one)")
        stop["monitor"] = best
        rule = cfg.save_best.get("rule") if isinstance(cfg.save_best, dict) else None
        if rule is not None:
            stop.setdefault("rule", rule)
    if stop.get("rule") is None and _infer_rule(stop["monitor"]) is None:
        raise ConfigArgumentError(
            f"config key 'early_stopping.rule' is needed for monitor {stop['monitor']!r}; "
            "expected 'greater' or 'less'")
    _positive_int(stop["patience"], "early_stopping.patience")
    hooks = [h for h in (cfg.get("custom_hooks") or [])
             if not (isinstance(h, dict) and h.get("type") == "EarlyStoppingHook")]
    hooks.append(dict(type="EarlyStoppingHook", **stop))
    cfg.custom_hooks = hooks


def _configure_sync_bn(cfg, launcher: str) -> None:
    sync = cfg.get("sync_bn", None)
    if sync in (None, False):
        cfg.pop("sync_bn", None)
        return
    if sync not in (True, "torch"):
        raise ConfigArgumentError(f"config key 'sync_bn' is {sync!r}; expected True or False")
    cfg.pop("sync_bn")  # converted by our wrapper (mmengine's needs CUDA)
    if launcher == "none":
        return  # one process: nothing to synchronise
    wrapper = dict(cfg.get("model_wrapper_cfg") or dict(type="MMDistributedDataParallel"))
    if wrapper.get("type") not in ("MMDistributedDataParallel", "SyncBNDistributedDataParallel"):
        raise ConfigArgumentError(
            f"config key 'sync_bn' works with model_wrapper_cfg.type "
            f"'MMDistributedDataParallel', got {wrapper.get('type')!r}")
    wrapper["type"] = "SyncBNDistributedDataParallel"
    cfg.model_wrapper_cfg = wrapper


def configure_switches(cfg, launcher: str = "none") -> dict:
    """Turn the switch keys of ``cfg`` into mmengine parts (in place); returns
    which are on (``amp``, ``ema``, ``accumulative_counts``, ...)."""
    import toolbox.engine.sync_bn  # noqa: F401 - registers the DDP wrapper
    amp = configure_amp(cfg)
    fp32_modules = cfg.get("amp_fp32_modules", None) or ()
    if isinstance(fp32_modules, str) or not all(isinstance(n, str) for n in fp32_modules):
        raise ConfigArgumentError(f"config key 'amp_fp32_modules' is {fp32_modules!r}; expected "
                                  "a list of submodule names, e.g. ['backbone', 'neck']")
    if amp:
        hooks = list(cfg.get("custom_hooks") or [])
        if not any(isinstance(h, dict) and h.get("type") == "MixedPrecisionHook" for h in hooks):
            hooks.append(dict(type="MixedPrecisionHook", fp32_modules=list(fp32_modules)))
        cfg.custom_hooks = hooks
    _configure_ema(cfg)
    accumulation = _accumulation(cfg)
    _configure_auto_scale_lr(cfg, accumulation)
    _configure_save_best(cfg)
    _configure_early_stopping(cfg)
    _configure_sync_bn(cfg, launcher)
    return dict(amp=amp, ema=bool(cfg.get("ema")), accumulative_counts=accumulation)
