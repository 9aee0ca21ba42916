"""Deprecated alias of :mod:`toolbox.models.backbones.spinenet_specs` (same names);
removed in the next release."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.models.backbones.spinenet_specs")
