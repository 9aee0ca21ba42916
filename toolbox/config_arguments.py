"""Constructor arguments of a component, read from its signature, for the
config checks (:mod:`toolbox.config_check`): which names it accepts, and the
problems of a config dict's arguments, one sentence each."""
from __future__ import annotations

import difflib
import inspect

__all__ = ["accepted_arguments", "forwards_kwargs_to_super", "missing_arguments",
           "unknown_arguments"]


def forwards_kwargs_to_super(init, var_kw_name: str) -> bool:
    try:
        source = inspect.getsource(init)
    except (OSError, TypeError):
        return False
    return "super(" in source and f"**{var_kw_name}" in source


def accepted_arguments(component) -> tuple[list[str], bool]:
    """(accepted argument names, takes arbitrary keywords) of a constructor
    or function. A class ``__init__`` that hands its ``**kwargs`` on to
    ``super().__init__`` (a mixin, as mmengine's ``LRSchedulerMixin``; a
    plugin's ``CBAMFPN(FPN)``) is read through to the next ``__init__``."""
    if not inspect.isclass(component):
        try:
            params = list(inspect.signature(component).parameters.values())
        except (TypeError, ValueError):
            return [], True
        return ([p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)],
                any(p.kind is p.VAR_KEYWORD for p in params))
    names: list[str] = []
    for klass in component.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return names, True
        try:
            params = [p for p in inspect.signature(init).parameters.values() if p.name != "self"]
        except (TypeError, ValueError):
            return names, True
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in names]
        var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
        if var_kw is None:
            return names, False
        if not forwards_kwargs_to_super(init, var_kw):
            return names, True
    return names, True


def unknown_arguments(component, args: dict, path: str, kind: str, name: str,
                      ignore: tuple = ()) -> list[str]:
    accepted, var_kw = accepted_arguments(component)
    if var_kw:
        return []
    problems = []
    for key in args:
        if key in accepted or key in ignore or key in ("type", "_scope_"):
            continue
        close = difflib.get_close_matches(key, accepted, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        problems.append(f"config key '{path}.{key}': {kind} '{name}' has no argument "
                        f"'{key}'.{hint} Accepted arguments: {', '.join(accepted) or '(none)'}.")
    return problems


def missing_arguments(component, args: dict, path: str, kind: str, name: str,
                      ignore: tuple = ()) -> list[str]:
    target = component.__init__ if inspect.isclass(component) else component
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    missing = [p.name for p in sig.parameters.values()
               if p.name != "self" and p.default is p.empty and p.name not in args
               and p.name not in ignore
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not missing:
        return []
    return [f"config key '{path}': {kind} '{name}' is missing required argument(s) "
            f"{', '.join(missing)}; set {', '.join(f'{path}.{m}' for m in missing)}."]
