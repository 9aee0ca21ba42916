"""Deprecated alias of :mod:`toolbox.datasets.label_map_base` (same names);
removed in the next release."""
from __future__ import annotations

import warnings

_NEW = "toolbox.datasets.label_map_base"


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from toolbox.datasets import label_map_base as moved
    value = getattr(moved, name)
    warnings.warn(f"{__name__}.{name} is deprecated; import it from {_NEW}",
                  DeprecationWarning, stacklevel=2)
    return value
