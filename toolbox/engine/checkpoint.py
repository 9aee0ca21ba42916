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
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

from toolbox.errors import UnsafeCheckpointError

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


def load_checkpoint(filename, map_location=None):
    """Load a local checkpoint with ``weights_only=True`` and the allow-list."""
    path = Path(filename)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{filename}' does not exist or is not a file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
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
    return from_plain(checkpoint)


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
