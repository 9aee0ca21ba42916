"""Deprecated alias of :mod:`toolbox.datasets.synthetic_volume_generation` (same names);
removed in the next release."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.datasets.synthetic_volume_generation")
