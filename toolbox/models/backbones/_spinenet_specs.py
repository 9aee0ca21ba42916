"""Deprecated alias of :mod:`toolbox.models.backbones.spinenet_specs` (same names);
removed in the next release."""
from __future__ import annotations

import warnings

_NEW = "toolbox.models.backbones.spinenet_specs"


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from toolbox.models.backbones import spinenet_specs as moved
    value = getattr(moved, name)
    warnings.warn(f"{__name__}.{name} is deprecated; import it from {_NEW}",
                  DeprecationWarning, stacklevel=2)
    return value
