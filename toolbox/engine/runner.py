"""Build an mmengine Runner from a toolbox config, with the toolbox's checks.

Adds to plain ``Runner.from_cfg``: config validation with clear errors
before anything is built, the safe-checkpoint machinery, the class-frequency
hook, CPU-friendly distributed set-up (gloo), a robust ``--resume``, and the
training switches of :mod:`toolbox.engine.switches` (``amp``, ``ema``,
``accumulative_counts``, ``auto_scale_lr``, ``save_best``, ``early_stopping``,
``sync_bn``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from toolbox import checkpoint_io
from toolbox.datasets.check import num_classes_settings
from toolbox.engine import checkpoint as ckpt
from toolbox.engine.switches import configure_switches
from toolbox.errors import CheckpointError, ConfigArgumentError, ConfigError
from toolbox.registry import DATASETS, METRICS, MODELS, check_arguments

_TOOLBOX_HOOKS = ("SafeCheckpointHook", "ClassFrequencyHook")


def _check_component(cfg, registry, where: str) -> None:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str):
        return
    component = registry.get(cfg["type"])
    args = {k: v for k, v in cfg.items() if k not in ("type", "_scope_")}
    try:
        check_arguments(component, args, registry.kind)
    except ConfigArgumentError as exc:
        raise ConfigArgumentError(f"config key '{where}': {exc}") from None


def _dataset_classes(cfg, path: str) -> tuple[int, str] | None:
    """``(number of classes, where it comes from)`` of a dataset config, when
    known without building it: its ``metainfo.classes`` override, else its
    class's ``METAINFO['classes']`` (looking through wrappers' ``dataset``)."""
    if not isinstance(cfg, dict):
        return None
    classes = (cfg.get("metainfo") or {}).get("classes")
    if classes:
        return len(classes), f"{path}.metainfo.classes"
    kind = cfg.get("type")
    if isinstance(kind, str) and kind in DATASETS:
        component = DATASETS.get(kind)
        of_config = getattr(component, "classes_of_config", None)  # classes set by arguments
        classes = (of_config(cfg) if callable(of_config)
                   else (getattr(component, "METAINFO", None) or {}).get("classes"))
        if classes:
            return len(classes), f"{kind}.METAINFO['classes'] ({path}.type)"
    if isinstance(cfg.get("dataset"), dict):  # RepeatDataset, ClassBalancedDataset, ...
        return _dataset_classes(cfg["dataset"], f"{path}.dataset")
    return None


def _check_num_classes(cfg: Config) -> None:
    """The model's ``num_classes`` must equal the training set's class count."""
    loader = cfg.get("train_dataloader")
    if not loader or not cfg.get("model"):
        return
    known = _dataset_classes(loader.get("dataset"), "train_dataloader.dataset")
    if known is None:  # e.g. COCO: the classes come from the annotation file
        return
    count, source = known
    for where, value in num_classes_settings(cfg.model, "model"):
        if value != count:
            raise ConfigArgumentError(
                f"config key '{where}' is {value} but the training dataset has {count} "
                f"classes (from {source}); set {where}={count} or change the dataset's "
                "metainfo classes")


def validate_config(cfg: Config) -> None:
    """Check the top-level model, datasets and metrics before building them,
    and that the model's ``num_classes`` matches the training dataset.

    Nested parts (backbone, neck, head, losses, transforms) are checked by
    the registries when the model and datasets build them.
    """
    _check_component(cfg.get("model"), MODELS, "model")
    _check_num_classes(cfg)
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if loader:
            _check_component(loader.get("dataset"), DATASETS, f"{split}_dataloader.dataset")
        evaluator = cfg.get(f"{split}_evaluator")
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(metrics):
            if metric:
                _check_component(metric, METRICS, f"{split}_evaluator[{i}]")


def find_resume_checkpoint(work_dir) -> str | None:
    """The newest complete checkpoint in ``work_dir`` (None if there is none):
    ``epoch_N.pth`` / ``iter_N.pth`` from the highest number down (or the file
    ``last_checkpoint`` names, if it has another name), skipping any that is
    not a complete, loadable checkpoint (see :mod:`toolbox.engine.resume`)."""
    from toolbox.engine.resume import find_resume_checkpoint as find
    return find(work_dir)


def _load_from_settings(cfg: Config) -> bool:
    """Normalise ``load_from``; returns whether it loads strictly.

    ``load_from='x.pth'`` loads strictly (keys and shapes must match the
    model); partial loading (fine-tuning to other classes) is opted into
    with ``load_from=dict(path='x.pth', strict=False)`` or the top-level
    ``load_strict=False``."""
    strict = cfg.get("load_strict", True)
    load_from = cfg.get("load_from")
    if isinstance(load_from, dict):
        unknown = set(load_from) - {"path", "strict"}
        if "path" not in load_from or unknown:
            raise ConfigError(f"config key 'load_from' is {dict(load_from)!r}; expected a path "
                              "or dict(path='x.pth', strict=False)")
        strict = load_from.get("strict", strict)
        cfg.load_from = load_from["path"]
    cfg.pop("load_strict", None)
    return bool(strict)


def _install_strict_loading(runner: Runner, strict: bool) -> None:
    """Make ``runner.load_checkpoint`` (``load_from``, ``tools/test.py``)
    refuse a checkpoint whose keys or shapes do not fit the model."""
    from mmengine.model import is_model_wrapper

    from toolbox.convert.base import state_dict_mismatch
    original = runner.load_checkpoint

    def load_checkpoint(filename, map_location="cpu", strict_=None, revise_keys=None):
        # keys and shapes from a memory-mapped load (no tensor data read)
        checkpoint = checkpoint_io.load_checkpoint(filename, map_location="cpu", mmap=True)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise CheckpointError(f"checkpoint '{filename}' holds no state dict")
        state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        problem = state_dict_mismatch(model.state_dict(), state, partial=not strict)
        if problem and strict:
            raise CheckpointError(
                f"checkpoint '{filename}' does not match the model of this config: {problem}\n"
                "fix: use the config the checkpoint was trained with; to load only the "
                "matching weights (fine-tuning to other classes) set "
                "load_from=dict(path=..., strict=False) or --cfg-options load_strict=False")
        if problem:
            runner.logger.warning(f"partial load of '{filename}' (strict=False): {problem}")
        del checkpoint, state
        return original(filename, map_location=map_location, strict=False,
                        **({} if revise_keys is None else {"revise_keys": revise_keys}))

    runner.load_checkpoint = load_checkpoint


def _checkable(ds_cfg) -> bool:
    """Whether a dataset config builds a dataset with an annotation list
    (mmengine ``BaseDataset`` or like it) the data check understands; plain
    torch datasets are left alone."""
    from mmengine.dataset import BaseDataset
    while isinstance(ds_cfg, dict):
        kind = ds_cfg.get("type")
        try:
            klass = DATASETS.get(kind) if isinstance(kind, str) else kind
        except Exception:  # noqa: BLE001 - unknown names are config_check's to report
            return False
        if isinstance(klass, type) and (issubclass(klass, BaseDataset)
                                        or hasattr(klass, "load_data_list")):
            return True
        ds_cfg = ds_cfg.get("dataset")  # wrappers
    return False


def _run_data_check(cfg: Config) -> None:
    """The checks of ``tools/check_dataset.py``: print the table, stop on errors."""
    from toolbox.datasets.check import check_config_datasets, format_checks
    from toolbox.errors import DataError
    loaders = [name for name in ("train_dataloader", "val_dataloader", "test_dataloader")
               if _checkable((cfg.get(name) or {}).get("dataset"))]
    if not loaders:
        return
    reports = check_config_datasets(cfg, loaders=loaders)
    if not reports:
        return
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_checks(reports), flush=True)
    errors = [f"{r.where}: {e}" for r in reports for e in r.errors]
    if errors:
        raise DataError(f"the dataset check found {len(errors)} error(s) (table above): "
                        + "; ".join(errors[:3]) + ("; ..." if len(errors) > 3 else "")
                        + "\nfix: correct the data or the config (tools/check_dataset.py "
                        "CONFIG checks again); --skip-data-check skips this check")


def _setup_cpu_distributed(cfg: Config) -> None:
    """Initialise gloo ourselves when launched by torchrun on a CPU machine.

    mmengine's pytorch launcher calls ``torch.cuda.set_device``, which fails
    without a GPU; with the process group already up, mmengine skips it.
    """
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    cfg.setdefault("model_wrapper_cfg", dict(type="MMDistributedDataParallel"))
    cfg.model_wrapper_cfg["device_ids"] = None


def build_runner(cfg: Config, *, launcher: str = "none", resume: bool | str = False,
                 data_check: bool = False) -> Runner:
    """Prepare ``cfg`` and return ``Runner.from_cfg(cfg)``.

    ``data_check``: run the dataset checks first (``tools/train.py`` does,
    unless ``--skip-data-check``)."""
    from toolbox.registry import HOOKS  # the toolbox's hooks come through the hook point
    HOOKS.register_module(name="CheckpointHook", module=ckpt.RotatingCheckpointHook, force=True)
    ckpt.install()
    strict = _load_from_settings(cfg)
    max_nonfinite = cfg.pop("max_nonfinite_steps", None)
    resume_changes = cfg.pop("resume_changes", "apply")
    cfg.setdefault("default_scope", "toolbox")
    from toolbox.config_check import check_config
    from toolbox.short_run import apply_short_run_from_cfg
    apply_short_run_from_cfg(cfg)  # `--cfg-options short_run.max_iters=N short_run.num_images=M`
    check_config(cfg)  # the whole config, before anything is built
    validate_config(cfg)
    cfg.launcher = launcher
    if launcher != "none" and not torch.cuda.is_available():
        _setup_cpu_distributed(cfg)
    configure_switches(cfg, launcher)
    hooks = list(cfg.get("custom_hooks", []) or [])
    present = {h.get("type") for h in hooks if isinstance(h, dict)}
    hooks += [dict(type=name) for name in _TOOLBOX_HOOKS if name not in present]
    from toolbox.engine.nonfinite import DEFAULT_MAX_CONSECUTIVE
    if "NonFiniteGuardHook" not in present:
        hooks.append(dict(type="NonFiniteGuardHook", max_consecutive=DEFAULT_MAX_CONSECUTIVE
                          if max_nonfinite is None else max_nonfinite))
    if "ResumeStateHook" not in present:
        hooks.append(dict(type="ResumeStateHook"))
    cfg.custom_hooks = hooks
    if data_check:
        _run_data_check(cfg)
    changes = []
    if resume:
        from toolbox.engine.resume import check_resume_config, resolve_resume
        path = resolve_resume(resume, cfg.work_dir)
        cfg.resume = path is not None
        cfg.load_from = path
        if path is not None:
            cfg.resume_changes = resume_changes
            changes = check_resume_config(path, cfg)
            cfg.pop("resume_changes", None)
    os.makedirs(cfg.work_dir, exist_ok=True)
    runner = Runner.from_cfg(cfg)
    _install_strict_loading(runner, strict)  # load_from, tools/test.py and --resume
    lr = [(a, b) for key, a, b in changes if key == "optim_wrapper.optimizer.lr"]
    if lr:
        for hook in runner.hooks:
            if type(hook).__name__ == "ResumeStateHook":
                hook.lr_change = lr[0]
    return runner
