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

from toolbox.datasets.check import num_classes_settings
from toolbox.engine import checkpoint as ckpt
from toolbox.engine.switches import configure_switches
from toolbox.errors import ConfigArgumentError
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
        classes = (getattr(DATASETS.get(kind), "METAINFO", None) or {}).get("classes")
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
    """The newest complete checkpoint in ``work_dir``.

    Trusts ``last_checkpoint`` only if the file it names exists; otherwise
    takes the highest-numbered ``epoch_N.pth`` / ``iter_N.pth``.
    """
    work_dir = Path(work_dir)
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file():
        named = Path(pointer.read_text().strip())
        if named.is_file():
            return str(named)
    found = []
    for path in work_dir.glob("*.pth"):
        match = re.fullmatch(r"(epoch|iter)_(\d+)\.pth", path.name)
        if match:
            found.append((int(match.group(2)), path))
    return str(max(found)[1]) if found else None


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


def build_runner(cfg: Config, *, launcher: str = "none", resume: bool | str = False) -> Runner:
    """Prepare ``cfg`` and return ``Runner.from_cfg(cfg)``."""
    import toolbox.engine.hooks  # noqa: F401 - registers the toolbox hooks
    import toolbox.engine.visualization_hook  # noqa: F401 - and the picture hook
    ckpt.install()
    cfg.setdefault("default_scope", "toolbox")
    from toolbox.config_check import check_config, prepare_short_run
    prepare_short_run(cfg)  # `--cfg-options short_run.max_iters=N short_run.num_images=M`
    check_config(cfg)  # the whole config, before anything is built
    validate_config(cfg)
    cfg.launcher = launcher
    if launcher != "none" and not torch.cuda.is_available():
        _setup_cpu_distributed(cfg)
    configure_switches(cfg, launcher)
    hooks = list(cfg.get("custom_hooks", []) or [])
    present = {h.get("type") for h in hooks if isinstance(h, dict)}
    hooks += [dict(type=name) for name in _TOOLBOX_HOOKS if name not in present]
    cfg.custom_hooks = hooks
    if resume:
        path = resume if isinstance(resume, str) else find_resume_checkpoint(cfg.work_dir)
        cfg.resume = path is not None
        cfg.load_from = path
    os.makedirs(cfg.work_dir, exist_ok=True)
    return Runner.from_cfg(cfg)
