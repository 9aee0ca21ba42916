"""Checkpoints that load under ``weights_only=True`` and are written atomically.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7's checkpoints
hold ``HistoryBuffer`` objects and numpy arrays (its log history), whose
pickles need ``builtins.getattr``, a gadget we refuse to allow-list. Instead:

* :class:`SafeCheckpointHook` rewrites the message-hub state into plain
  containers and tensors just before a checkpoint is saved;
* :func:`toolbox.checkpoint_io.load_checkpoint` (installed as mmengine's
  loader for local paths) loads with ``weights_only=True`` and rebuilds the
  ``HistoryBuffer`` objects. A checkpoint holding anything else pickled is
  refused, never executed. The reading functions moved there (below engine
  and apis); the names here are deprecated aliases.
* :class:`AtomicLocalBackend` replaces mmengine's local file backend so every
  checkpoint is written to a temporary file, fsynced, then renamed.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import CheckpointLoader

from toolbox import checkpoint_io as _io

#: names that moved to :mod:`toolbox.checkpoint_io` (deprecated here)
_MOVED = ("CheckpointNotFoundError", "RESUME_KEYS", "SAFE_GLOBALS", "checkpoint_problem",
          "from_plain", "load_checkpoint", "to_plain")


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f"toolbox.engine.checkpoint.{name} is deprecated; import it from "
                      "toolbox.checkpoint_io", DeprecationWarning, stacklevel=2)
        return getattr(_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def non_finite_tensors(state: dict, show: int = 3) -> tuple[int, list[str]]:
    """(number of floating tensors with a NaN/Inf value, the first ``show`` names)."""
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor)
           and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    return len(bad), bad[:show]


def clean_stale_temp_files(directory) -> list[str]:
    """Remove ``.NAME.*.tmp`` files left by writes that were killed; returns them."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for tmp in directory.glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp.name)
        except OSError:
            pass
    return removed


def atomic_write_bytes(data: bytes, filepath) -> None:
    """Write ``data`` to a temporary file beside ``filepath``, then rename."""
    filepath = Path(filepath)
    filepath.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{filepath.name}.", suffix=".tmp", dir=filepath.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend, but writes are atomic (temp file + rename)."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


class SafeCheckpointHook(Hook):
    """Keeps checkpoints loadable with ``weights_only=True`` (see module doc)."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in list(checkpoint):
            if key != "state_dict":
                checkpoint[key] = _io.to_plain(checkpoint[key])


_installed = False


def install() -> None:
    """Make mmengine use the safe loader and atomic writes (idempotent)."""
    global _installed
    if _installed:
        return
    from mmengine.fileio import io as mmengine_io
    register_backend("local", AtomicLocalBackend, force=True, prefixes="")
    for key in [k for k in mmengine_io.backend_instances if k.startswith(":")]:
        del mmengine_io.backend_instances[key]  # drop cached plain backends
    CheckpointLoader.register_scheme(prefixes="", loader=_io.load_checkpoint, force=True)
    _installed = True


class RotatingCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (registered under that name in the
    toolbox scope), but safe to kill at any point:

    * the new checkpoint is written (atomically) before the oldest one is
      removed, so ``max_keep_ckpts=1`` never leaves zero checkpoints;
    * ``last_checkpoint`` is written atomically (temp file + rename);
    * temp files left by killed writes (``.epoch_3.pth.*.tmp``) are removed
      when training starts.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        removed = clean_stale_temp_files(runner.work_dir)
        if self.out_dir != runner.work_dir and osp.isdir(str(self.out_dir)):
            removed += clean_stale_temp_files(self.out_dir)
        if removed:
            print_log(f"removed {len(removed)} temporary file(s) left by an interrupted "
                      f"checkpoint write: {', '.join(removed)}", logger="current",
                      level=logging.WARNING)

    def _save_checkpoint_with_step(self, runner, step, meta):
        doomed = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                doomed = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(self.out_dir, ckpt_filename, self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta,
                               by_epoch=self.by_epoch, backend_args=self.backend_args,
                               **self.args)
        if not is_main_process():
            return
        atomic_write_bytes(str(self.last_ckpt).encode(), osp.join(runner.work_dir,
                                                                  "last_checkpoint"))
        if doomed is not None and doomed != step:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(doomed))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):
                self.file_backend.rmtree(old)


def assert_readable(filename) -> None:
    """Raise the :class:`CheckpointError` :func:`load_checkpoint` would raise
    for a missing, empty or non-zip file, without loading a good one (cheap:
    reads the zip directory only)."""
    path = Path(filename)
    if not path.is_file() or path.stat().st_size == 0 or not zipfile.is_zipfile(path):
        _io.load_checkpoint(filename)  # raises with the reason (or loads a legacy file)
