"""Reading toolbox checkpoints: ``weights_only=True`` loading with an allow-list.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7's checkpoints
hold ``HistoryBuffer`` objects and numpy arrays (its log history), whose
pickles need ``builtins.getattr``, a gadget we refuse to allow-list. The
training side (:mod:`toolbox.engine.checkpoint`) saves them as plain
containers (:func:`to_plain`); :func:`load_checkpoint` loads with
``weights_only=True`` and rebuilds them. A checkpoint holding anything else
pickled is refused, never executed.

This module sits below both :mod:`toolbox.engine` and :mod:`toolbox.apis`,
which both read checkpoints.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from toolbox.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["CheckpointNotFoundError", "RESUME_KEYS", "SAFE_GLOBALS", "checkpoint_problem",
           "from_plain", "load_checkpoint", "to_plain"]


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
