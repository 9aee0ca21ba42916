"""The on-disk cache of the generated synthetic sets: each split is made
once, under a lock, into a temporary folder renamed into place, so
concurrent processes (distributed ranks, data-loader workers, parallel test
runs) never see half a split."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from typing import Any, Callable

from toolbox.errors import DataError

__all__ = ["cache_root", "ensure_split", "holds_split"]

try:
    import fcntl
except ImportError:  # not POSIX: the atomic rename alone keeps splits whole
    fcntl = None

logger = logging.getLogger("toolbox.datasets")


def cache_root(kind: str) -> str:
    """``$TOOLBOX_DATA_DIR/<kind>`` (default ``~/.cache/toolbox/<kind>``)."""
    base = os.environ.get("TOOLBOX_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "toolbox")
    return os.path.join(base, kind)


def holds_split(target: str, spec: Any, what: str) -> bool:
    """True if ``target`` holds the split ``spec`` describes (its
    ``meta.json`` parameters equal ``spec.as_dict()``); DataError if it holds
    something else; False if it is absent or empty."""
    meta_path = os.path.join(target, "meta.json")
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            found = json.load(f).get("parameters", {})
        wanted = json.loads(json.dumps(spec.as_dict()))
        if found != wanted:
            diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
            raise DataError(f"{target} holds a {what} with other parameters "
                            f"(found, wanted): {diff}; use another data_root or delete it")
        return True
    if os.path.isdir(target) and os.listdir(target):
        raise DataError(f"{target} exists, is not empty and is not a {what} "
                        "(no meta.json); use another data_root")
    return False


def ensure_split(target: str, spec: Any, generate: Callable[[Any, str], None],
                 what: str) -> str:
    """Run ``generate(spec, folder)`` into ``target`` unless it already holds
    that split; return ``target``."""
    if holds_split(target, spec, what):
        return target
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.join(parent, f".{name}.lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if holds_split(target, spec, what):
                return target
            for stale in os.listdir(parent):  # left by a process that died mid-way
                if fcntl is not None and stale.startswith(f".{name}.tmp-"):
                    shutil.rmtree(os.path.join(parent, stale), ignore_errors=True)
            tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}-{threading.get_ident()}")
            start = time.perf_counter()
            logger.info("generating the %s split '%s' (first use)", what, spec.split)
            try:
                generate(spec, tmp)
                if os.path.isdir(target):
                    os.rmdir(target)  # an empty folder (anything else was refused above)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            logger.info("generated the %s split '%s' in %.1f s into %s", what, spec.split,
                        time.perf_counter() - start, target)
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return target
