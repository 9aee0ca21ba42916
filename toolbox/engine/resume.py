"""What ``--resume`` needs beyond mmengine's: a verified checkpoint, the RNG
states, the validation a kill interrupted, and the config changes reported.

* :func:`resolve_resume` picks the newest complete checkpoint (see
  :func:`toolbox.checkpoint_io.checkpoint_problem`), naming every file it
  skips, and says so when the run starts from scratch.
* :class:`ResumeStateHook` stores Python ``random``, NumPy and torch (CPU and
  CUDA) RNG states in every checkpoint's ``meta`` and restores them on
  resume, so a run killed mid-epoch re-runs that epoch with the same
  augmentation and sampler order and ends with the same weights. Checkpoints
  are written at the end of an epoch (or every ``interval`` iterations), so
  an epoch-based run resumes at the start of the epoch that was interrupted.
  DataLoader workers are seeded from the main process's torch RNG (and
  mmengine's ``worker_init_fn``), so they follow. Under DDP the states of
  rank 0 are saved and restored on every rank. Iteration-based runs resume
  at the checkpoint's iteration: mmengine replays the data of the
  iterations already trained, then the states are restored, just before
  the first new batch.
* Validation runs with the training RNG states put back afterwards, so
  the validations a resumed run does not repeat do not shift its draws.
* It also records the last completed validation in ``work_dir/last_validation``;
  a run killed after its checkpoint but before that checkpoint's
  validation finished validates first on ``--resume``.
* :func:`config_changes` lists learning rate, schedule and batch-size values
  that differ from the resumed run's config. They are reported and applied
  (the new learning rate replaces the resumed optimizer's, scaled as its
  schedule had scaled it); ``resume_changes='refuse'`` makes them an error.
"""
from __future__ import annotations

import logging
import os.path as osp
import random
from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from toolbox.checkpoint_io import checkpoint_problem, load_checkpoint
from toolbox.engine.checkpoint import atomic_write_bytes
from toolbox.errors import CheckpointError, ConfigError

_RNG_KEY = "toolbox_rng"
_VALIDATION_FILE = "last_validation"


def _log(msg: str, level=logging.WARNING) -> None:
    print_log(msg, logger="current", level=level)


# ----------------------------------------------------------------- choosing
def _candidates(work_dir: Path) -> list[Path]:
    import re
    found = []
    for path in work_dir.glob("*.pth"):
        match = re.fullmatch(r"(epoch|iter)_(\d+)\.pth", path.name)
        if match:
            found.append((int(match.group(2)), path.stat().st_mtime_ns, path))
    return [p for _, _, p in sorted(found, reverse=True)]


def resolve_resume(resume, work_dir) -> str | None:
    """The checkpoint ``--resume`` continues from (None: from scratch).

    ``resume`` is a path (used as is, after verification: a bad one is an
    error) or True (the newest complete checkpoint in ``work_dir``: the
    highest-numbered ``epoch_N`` / ``iter_N``, or the one ``last_checkpoint``
    names when it has another name; incomplete ones are skipped with a
    message naming them)."""
    if isinstance(resume, str):
        problem = checkpoint_problem(resume)
        if problem:
            raise CheckpointError(f"cannot resume from '{resume}': {problem}\n"
                                  "fix: pass another checkpoint, or --resume alone to take "
                                  "the newest complete one of the work dir")
        return resume
    work_dir = Path(work_dir)
    ordered = [p.resolve() for p in _candidates(work_dir)]  # newest first
    pointer = work_dir / "last_checkpoint"
    named = pointer.read_text().strip() if pointer.is_file() else ""
    if named and Path(named).resolve() not in ordered:  # e.g. a custom filename_tmpl
        ordered.insert(0, Path(named).resolve())
    for path in ordered:
        if not path.is_file():
            _log(f"resume: last_checkpoint names '{path}', which does not exist; looking "
                 "for the newest complete checkpoint")
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            _log(f"resume: continuing from {path}", logging.INFO)
            return str(path)
        _log(f"resume: skipping '{path}': {problem}")
    _log(f"resume: no complete checkpoint in '{work_dir}'; starting from scratch")
    return None


def find_resume_checkpoint(work_dir) -> str | None:
    """:func:`resolve_resume` for a work dir (None when it does not exist)."""
    work_dir = Path(work_dir)
    return resolve_resume(True, work_dir) if work_dir.is_dir() else None


# ----------------------------------------------------------------- config changes
_WATCHED = ("optim_wrapper.optimizer.lr", "optim_wrapper.optimizer.type",
            "optim_wrapper.accumulative_counts", "param_scheduler", "train_cfg.max_epochs",
            "train_cfg.max_iters", "train_cfg.by_epoch", "train_dataloader.batch_size")


def _get(cfg, dotted: str):
    value = cfg._cfg_dict if hasattr(cfg, "_cfg_dict") else cfg  # a Config is no dict
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_changes(old_cfg_text: str, cfg) -> list[tuple[str, object, object]]:
    """``(key, resumed run's value, this config's value)`` for the watched keys."""
    from mmengine.config import Config
    try:
        old = Config.fromstring(old_cfg_text, ".py")
    except Exception:  # noqa: BLE001 - e.g. custom_imports not importable here
        return []
    changes = []
    for key in _WATCHED:
        a, b = _plain(_get(old, key)), _plain(_get(cfg, key))
        if a != b:
            changes.append((key, a, b))
    return changes


def check_resume_config(path: str, cfg) -> list[tuple[str, object, object]]:
    """Report (or, with ``resume_changes='refuse'``, refuse) config values that
    differ from the run being resumed."""
    meta = (load_checkpoint(path, map_location="cpu", mmap=True).get("meta") or {})
    text = meta.get("cfg")
    if not isinstance(text, str):
        return []
    changes = config_changes(text, cfg)
    if not changes:
        return []
    listing = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)
    if cfg.get("resume_changes", "apply") == "refuse":
        raise ConfigError(f"the config differs from the run resumed from '{path}': {listing}\n"
                          "fix: undo the changes, or set resume_changes='apply' to train on "
                          "with the new values")
    _log(f"resume: the config differs from the resumed run's ({path}): {listing}. Applied: "
         "the new values are used from here on (learning rate: replaces the resumed "
         "optimizer's, scaled as its schedule had scaled it); set resume_changes='refuse' "
         "to stop instead")
    return changes


# ----------------------------------------------------------------- the hook
def rng_states() -> dict:
    state = dict(python=list(random.getstate()), torch=torch.get_rng_state())
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = [kind, keys.astype(np.int64).tolist(), int(pos), int(has_gauss),
                      float(gauss)]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass


def _by_epoch(loop) -> bool:
    """Epoch-based train loop? (``IterBasedTrainLoop`` has ``max_epochs`` too.)"""
    from mmengine.runner.loops import IterBasedTrainLoop
    return not isinstance(loop, IterBasedTrainLoop) and hasattr(loop, "max_epochs")


class _RestoreAfterReplay:
    """A dataloader iterator that restores the RNG states before its
    ``skip + 1``-th item (after mmengine's replay of ``skip`` batches)."""

    def __init__(self, inner, skip: int, state: dict):
        self._inner, self._skip, self._state, self._count = inner, skip, state, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._count == self._skip and self._state is not None:
            set_rng_states(self._state)
            self._state = None
        self._count += 1
        return next(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class ResumeStateHook(Hook):
    """RNG states in checkpoints, the interrupted validation re-run, and the
    resumed config's changes applied (see the module docstring)."""

    priority = "NORMAL"  # before SafeCheckpointHook (VERY_LOW) converts the meta

    def __init__(self):
        self._rng = None
        self.lr_change = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})[_RNG_KEY] = rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._rng = (checkpoint.get("meta") or {}).get(_RNG_KEY)

    def before_train(self, runner) -> None:
        if not getattr(runner, "_resume", False) or self._rng is None and runner.iter == 0:
            return
        self._apply_lr_change(runner)
        self._finish_interrupted_validation(runner)
        # last: nothing above may consume random numbers. Iteration-based loops
        # first replay the data of the iterations already trained (mmengine
        # advances the dataloader iterator): the states are restored after
        # that replay, just before the first new batch is drawn.
        loop = runner.train_loop
        if self._rng is not None:
            if _by_epoch(loop) or not hasattr(loop, "dataloader_iterator"):
                set_rng_states(self._rng)
            else:
                loop.dataloader_iterator = _RestoreAfterReplay(
                    loop.dataloader_iterator, loop.iter, self._rng)
        self._rng = None

    def _apply_lr_change(self, runner) -> None:
        """Scale the resumed optimizer's learning rates by new / old config lr
        (set by :func:`toolbox.engine.runner.build_runner` from
        :func:`check_resume_config`)."""
        change = getattr(self, "lr_change", None)
        optimizer = getattr(runner.optim_wrapper, "optimizer", None)
        if not change or optimizer is None:
            return
        old, new = change
        if not (isinstance(old, (int, float)) and isinstance(new, (int, float))) or not old:
            return
        ratio = new / old
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * ratio
            if "initial_lr" in group:
                group["initial_lr"] = group["initial_lr"] * ratio
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for scheduler in schedulers:
            if hasattr(scheduler, "base_values"):
                scheduler.base_values = [v * ratio for v in scheduler.base_values]
        _log(f"resume: learning rate {old} -> {new} applied to the resumed optimizer "
             f"(current lr {optimizer.param_groups[0]['lr']:.6g})")

    def _finish_interrupted_validation(self, runner) -> None:
        loop, val = runner.train_loop, runner.val_loop
        if val is None or getattr(loop, "val_interval", 0) <= 0:
            return
        by_epoch = _by_epoch(loop)
        done = loop.epoch if by_epoch else loop.iter
        last = loop.max_epochs if by_epoch else loop.max_iters
        if done <= 0 or done < loop.val_begin or not (done % loop.val_interval == 0
                                                       or done == last):
            return
        if self._last_validated(runner) >= done:
            return
        _log(f"resume: the validation after {'epoch' if by_epoch else 'iteration'} {done} "
             "did not complete before the run stopped; running it now")
        val.run()

    @staticmethod
    def _last_validated(runner) -> int:
        path = osp.join(runner.work_dir, _VALIDATION_FILE)
        try:
            return int(open(path).read().strip())
        except (OSError, ValueError):
            return -1

    def before_val(self, runner) -> None:
        """Validation must not move the training RNGs: a resumed run does not
        repeat the validations before its checkpoint, so their draws would
        shift every later augmentation."""
        self._train_rng = rng_states()

    def after_val(self, runner) -> None:
        if getattr(self, "_train_rng", None) is not None:
            set_rng_states(self._train_rng)
            self._train_rng = None

    def after_val_epoch(self, runner, metrics=None) -> None:
        loop = getattr(runner, "_train_loop", None)
        if loop is None or isinstance(loop, dict):
            return
        done = loop.epoch if _by_epoch(loop) else loop.iter
        from mmengine.dist import is_main_process
        if is_main_process():
            atomic_write_bytes(str(done).encode(), osp.join(runner.work_dir, _VALIDATION_FILE))
