"""Deprecated aliases of moved modules and names, kept for one release.

An old module becomes two lines::

    from toolbox.deprecation import moved_names
    __getattr__ = moved_names(__name__, "toolbox.datasets.split_cache")

and importing a name from it still works, with a ``DeprecationWarning``
naming the new place.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Callable, Iterable


def moved_names(old: str, new: str | dict[str, str], names: Iterable[str] | None = None,
                renamed: dict[str, str] | None = None) -> Callable[[str], object]:
    """A module ``__getattr__`` for the deprecated module ``old``.

    ``new`` is the module every name moved to, or a mapping name -> module;
    ``names`` limits the aliases (default: every public name of ``new``);
    ``renamed`` maps old names to new ones in the target module."""
    targets = new if isinstance(new, dict) else None
    allowed = set(names) if names is not None else (set(targets) if targets else None)
    renamed = dict(renamed or {})

    def __getattr__(name: str):
        if name.startswith("__") or (allowed is not None and name not in allowed
                                     and name not in renamed):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        module = targets[name] if targets else new
        value = getattr(importlib.import_module(module), renamed.get(name, name))
        warnings.warn(f"{old}.{name} is deprecated; import it from {module} "
                      f"({module}.{renamed.get(name, name)})", DeprecationWarning, stacklevel=2)
        return value

    return __getattr__
