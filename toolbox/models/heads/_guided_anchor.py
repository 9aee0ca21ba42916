"""Deprecated: ``AnchorGuidance``, ``check_levels`` and ``shape_thresholds``
moved to :mod:`toolbox.models.layers.anchor_guidance`. Importing them from
here still works for one release and warns."""
from __future__ import annotations

import importlib
import warnings

_TARGET = "toolbox.models.layers.anchor_guidance"
_MOVED = ("AnchorGuidance", "check_levels", "shape_thresholds", "DEFAULT_LOSS_LOC",
          "DEFAULT_LOSS_SHAPE", "MAX_LOG_RATIO")


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"toolbox.models.heads._guided_anchor.{name} is deprecated; use "
                  f"{_TARGET}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_TARGET), name)
