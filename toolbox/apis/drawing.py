"""Deprecated alias of :mod:`toolbox.utils.drawing` (same names; moved below
both the engine and the apis); removed in the next release."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.utils.drawing")
