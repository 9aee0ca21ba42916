"""Cut a run short, for smoke tests and debugging.

From the command line (``tools/train.py`` and ``toolbox train``), one
``--cfg-options`` recipe::

    python tools/train.py CONFIG --cfg-options short_run.max_iters=20 short_run.num_images=16

``short_run.max_iters=N`` trains N iterations (an iteration-based loop,
validating once at the end, a checkpoint at the end, logging every
iteration, no LR schedule); ``short_run.num_images=M`` keeps the first M
images of the train, val and test sets (``num_images`` for the synthetic
datasets, ``indices`` for mmengine ``BaseDataset`` subclasses, through
dataset wrappers; a dataset taking neither is warned about and kept whole)
and loads them in the main process. ``short_run.validate=False`` skips
validation. :func:`apply_short_run` does the same from Python
(``toolbox.testing.smoke_train`` uses it).
"""
from __future__ import annotations

import inspect
import warnings

__all__ = ["apply_short_run", "apply_short_run_from_cfg"]

_SPLITS = ("train", "val", "test")


def _accepts(component, name: str) -> bool:
    try:
        return name in inspect.signature(component.__init__).parameters
    except (TypeError, ValueError):
        return False


def _limit_dataset(dataset: dict, num_images: int, path: str) -> None:
    from toolbox.registry import DATASETS
    if not isinstance(dataset, dict):
        return
    kind = dataset.get("type")
    component = DATASETS.get(kind) if isinstance(kind, str) else kind
    inner = dataset.get("dataset")
    subs = dataset.get("datasets", []) or []
    if component is not None and _accepts(component, "num_images"):
        dataset["num_images"] = num_images
    elif component is not None and _accepts(component, "indices"):
        dataset["indices"] = num_images
    elif not isinstance(inner, dict) and not subs:
        warnings.warn(f"short_run.num_images: {path} ('{kind}') takes neither 'num_images' "
                      "nor 'indices', so it keeps all its images (training is still cut "
                      "by short_run.max_iters)", UserWarning, stacklevel=3)
    if isinstance(inner, dict):
        _limit_dataset(inner, num_images, f"{path}.dataset")
    for i, sub in enumerate(subs):
        _limit_dataset(sub, num_images, f"{path}.datasets[{i}]")


def apply_short_run(cfg, max_iters: int | None = None, num_images: int | None = None,
                    validate: bool = True) -> None:
    """Edit ``cfg`` in place for a short run (see the module docstring)."""
    if max_iters is not None:
        max_iters = int(max_iters)
        if max_iters < 1:
            raise ValueError(f"short_run.max_iters must be >= 1, got {max_iters}")
        cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters,
                             val_interval=max_iters if validate else max_iters + 1)
        cfg.param_scheduler = []
        hooks = cfg.get("default_hooks") or {}
        if isinstance(hooks.get("logger"), dict):
            hooks["logger"]["interval"] = 1
        if isinstance(hooks.get("checkpoint"), dict):
            hooks["checkpoint"].update(by_epoch=False, interval=max_iters, max_keep_ckpts=1)
            hooks["checkpoint"].pop("save_best", None)
        if isinstance(cfg.get("log_processor"), dict):
            cfg.log_processor["by_epoch"] = False
            cfg.log_processor["window_size"] = 1
        cfg.pop("early_stopping", None)
        cfg.pop("save_best", None)
    if not validate:
        for key in ("val_dataloader", "val_cfg", "val_evaluator"):
            cfg[key] = None
    if num_images is not None:
        num_images = int(num_images)
        if num_images < 1:
            raise ValueError(f"short_run.num_images must be >= 1, got {num_images}")
        for split in _SPLITS:
            loader = cfg.get(f"{split}_dataloader")
            if not isinstance(loader, dict):
                continue
            _limit_dataset(loader.get("dataset"), num_images, f"{split}_dataloader.dataset")
            loader["batch_size"] = min(int(loader.get("batch_size", 1)), num_images)
            loader["num_workers"] = 0
            loader["persistent_workers"] = False


def apply_short_run_from_cfg(cfg) -> None:
    """Apply and remove a ``short_run`` key (``--cfg-options short_run.max_iters=N
    short_run.num_images=M``); the runner never sees it."""
    spec = cfg.get("short_run")
    if not spec:
        return
    from toolbox.errors import ConfigArgumentError
    unknown = set(spec) - {"max_iters", "num_images", "validate"}
    if unknown:
        raise ConfigArgumentError(
            f"config key 'short_run' has unknown key(s) {', '.join(sorted(unknown))}; "
            "accepted: max_iters, num_images, validate")
    apply_short_run(cfg, spec.get("max_iters"), spec.get("num_images"),
                    bool(spec.get("validate", True)))
    cfg.pop("short_run")
