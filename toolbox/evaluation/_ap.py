"""Deprecated alias of :mod:`toolbox.evaluation.average_precision` (same names);
removed in the next release."""
from toolbox.deprecation import moved_names

__getattr__ = moved_names(__name__, "toolbox.evaluation.average_precision",
                          renamed={"_as_dict": "as_dict"})
