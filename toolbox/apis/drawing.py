"""Deprecated alias of :mod:`toolbox.utils.drawing` (same names; moved below
both the engine and the apis); removed in the next release."""
from __future__ import annotations

import warnings


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from toolbox.utils import drawing
    value = getattr(drawing, name)
    warnings.warn(f"toolbox.apis.drawing.{name} is deprecated; import it from "
                  "toolbox.utils.drawing", DeprecationWarning, stacklevel=2)
    return value
