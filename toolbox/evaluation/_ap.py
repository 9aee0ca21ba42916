"""Deprecated alias of :mod:`toolbox.evaluation.average_precision` (same names);
removed in the next release."""
from __future__ import annotations

import warnings

_NEW = "toolbox.evaluation.average_precision"

_RENAMED = {"_as_dict": "as_dict"}  # the helper lost its underscore too


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from toolbox.evaluation import average_precision as moved
    value = getattr(moved, _RENAMED.get(name, name))
    warnings.warn(f"{__name__}.{name} is deprecated; import it from {_NEW}",
                  DeprecationWarning, stacklevel=2)
    return value
