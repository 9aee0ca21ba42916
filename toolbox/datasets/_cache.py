"""Deprecated alias of :mod:`toolbox.datasets.split_cache` (same names);
removed in the next release."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.datasets.split_cache")
