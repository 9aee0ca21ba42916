"""Deprecated alias of :mod:`toolbox.datasets.label_map_base` (same names);
removed in the next release."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.datasets.label_map_base")
