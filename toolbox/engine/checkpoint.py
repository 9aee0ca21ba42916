"""Checkpoints that load under ``weights_only=True`` and are written atomically.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7's checkpoints
hold ``HistoryBuffer`` objects and numpy arrays (its log history), whose
pickles need ``builtins.getattr``, a gadget we refuse to allow-list. Instead:

* :class:`SafeCheckpointHook` rewrites the message-hub state into plain
  containers and tensors just before a checkpoint is saved;
* :func:`load_checkpoint` (installed as mmengine's loader for local paths)
  loads with ``weights_only=True`` and rebuilds the ``HistoryBuffer`` objects.
  A checkpoint holding anything else pickled is refused, never executed.
* :class:`AtomicLocalBackend` replaces mmengine's local file backend so every
  checkpoint is written to a temporary file, fsynced, then renamed.
"""
from __future__ import annotations

import collections
import logging
import os
import os.path as osp
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

from toolbox.errors import CheckpointError, UnsafeCheckpointError

class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path that names no file."""


_BUFFER_TAG = "__toolbox_history_buffer__"
#: Globals beyond torch's own weights_only defaults that toolbox checkpoints
#: may contain (parameter schedulers keep their milestones in a Counter).
SAFE_GLOBALS = [collections.Counter, collections.defaultdict]


def to_plain(obj):
    """Replace HistoryBuffers and numpy values by tensors and builtin types."""
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {_BUFFER_TAG: True, "log": torch.from_numpy(np.asarray(log, dtype=np.float64)),
                "count": torch.from_numpy(np.asarray(count, dtype=np.float64)),
                "max_length": int(obj.max_length)}
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items()) \
            if type(obj) in (dict, collections.OrderedDict) else {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def from_plain(obj):
    """Inverse of :func:`to_plain` for the HistoryBuffers."""
    if isinstance(obj, dict):
        if obj.get(_BUFFER_TAG) is True:
            return HistoryBuffer(obj["log"].numpy(), obj["count"].numpy(), obj["max_length"])
        return type(obj)((k, from_plain(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


def load_checkpoint(filename, map_location=None, mmap: bool = False):
    """Load a local checkpoint with ``weights_only=True`` and the allow-list.

    ``mmap=True`` maps the tensors' storage instead of reading it (cheap
    checks of keys and shapes; zip checkpoints only)."""
    path = Path(filename)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint '{filename}' does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{filename}' is empty (0 bytes): a run was probably "
                              "killed while creating it\nfix: use an earlier checkpoint")
    is_zip = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True,
                                    **({"mmap": True} if mmap and is_zip else {}))
    except pickle.UnpicklingError as exc:
        if not is_zip:
            raise _unreadable(filename, path, exc) from exc
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:  # noqa: BLE001 - only used to word the message
            found = []
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
        extra = [g for g in found if g not in allowed] or ["(see the cause below)"]
        raise UnsafeCheckpointError(
            f"refusing to load checkpoint '{filename}': it contains pickled objects "
            f"outside the toolbox's allow-list: {', '.join(extra)}. Loading it would run "
            "arbitrary code, so it was not unpickled. If you trust the file, re-save its "
            "weights as a plain state dict (torch.save({'state_dict': sd}, path)).") from exc
    except (RuntimeError, EOFError, IndexError, ValueError, KeyError, OSError,
            AttributeError) as exc:
        raise _unreadable(filename, path, exc) from exc
    return from_plain(checkpoint)


def _unreadable(filename, path: Path, exc: BaseException) -> CheckpointError:
    size = path.stat().st_size
    why = ("it is not a zip archive: truncated while being written, or not a torch "
           "checkpoint at all" if not zipfile.is_zipfile(path) else
           "its zip archive is damaged")
    return CheckpointError(
        f"checkpoint '{filename}' ({size} bytes) cannot be read: {why} "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})\n"
        "fix: use an earlier checkpoint of the run (tools/train.py --resume picks the newest "
        "complete one by itself)")


#: keys a checkpoint written by the toolbox's training must hold to resume from it
RESUME_KEYS = ("meta", "state_dict", "message_hub")


def checkpoint_problem(path, keys=RESUME_KEYS) -> str | None:
    """None when ``path`` is a complete, loadable checkpoint holding ``keys``;
    else why not (one line). Unsafe checkpoints raise, as when loading."""
    path = Path(path)
    if not path.is_file():
        return "the file does not exist"
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        return (f"no zip directory at the end of its {path.stat().st_size} bytes "
                "(truncated while being written, or not a torch checkpoint)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"damaged zip archive ({exc})"
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "the zip archive holds no data.pkl (not a torch checkpoint)"
    try:
        checkpoint = load_checkpoint(path, map_location="cpu", mmap=True)
    except CheckpointError as exc:
        return str(exc).splitlines()[0]
    if not isinstance(checkpoint, dict):
        return f"it holds a {type(checkpoint).__name__}, not a checkpoint dict"
    missing = [k for k in keys if k not in checkpoint]
    if missing:
        return f"it lacks the key(s) {', '.join(missing)}"
    return None


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
                checkpoint[key] = to_plain(checkpoint[key])


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
    CheckpointLoader.register_scheme(prefixes="", loader=load_checkpoint, force=True)
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
        load_checkpoint(filename)  # raises with the reason (or loads a legacy file)
