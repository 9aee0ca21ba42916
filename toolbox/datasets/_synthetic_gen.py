"""Deprecated alias of :mod:`toolbox.datasets.synthetic_generation` (same names);
removed in the next release."""
from __future__ import annotations

import warnings

_NEW = "toolbox.datasets.synthetic_generation"


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from toolbox.datasets import synthetic_generation as moved
    value = getattr(moved, name)
    warnings.warn(f"{__name__}.{name} is deprecated; import it from {_NEW}",
                  DeprecationWarning, stacklevel=2)
    return value
