"""Deprecated: moved to :mod:`toolbox.datasets.collate` (same names)."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.datasets.collate", names=("det_collate", "seg_collate"))
