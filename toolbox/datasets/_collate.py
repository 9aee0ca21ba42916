"""Deprecated: moved to :mod:`toolbox.datasets.collate` (same names)."""
from __future__ import annotations

import warnings

_MOVED = ("det_collate", "seg_collate")


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f"toolbox.datasets._collate.{name} is deprecated; import it from "
                      "toolbox.datasets.collate", DeprecationWarning, stacklevel=2)
        from toolbox.datasets import collate
        return getattr(collate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
