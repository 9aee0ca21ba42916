"""Deprecated: ``AnchorGuidance``, ``check_levels`` and ``shape_thresholds``
moved to :mod:`toolbox.models.layers.anchor_guidance`. Importing them from
here still works for one release and warns."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.models.layers.anchor_guidance", names=(
    "AnchorGuidance", "check_levels", "shape_thresholds", "DEFAULT_LOSS_LOC",
    "DEFAULT_LOSS_SHAPE", "MAX_LOG_RATIO"))
