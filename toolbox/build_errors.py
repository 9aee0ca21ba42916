"""Build errors named by config key path: the part of config validation the
registries use (below :mod:`toolbox.registry`, which imports it).

:func:`toolbox.config_check.check_config` records the validated config's
tree here (:func:`set_config_tree`); a constructor's ``ValueError`` /
``TypeError`` at a later build is then reported by
:func:`describe_build_error` with the config key path and file, and an
argument problem gets :func:`locate`'s suffix.
"""
from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field

from toolbox.errors import ConfigArgumentError, ConfigValueError, ToolboxError

__all__ = ["argument_named", "config_context", "describe_build_error", "file_note", "locate",
           "set_config_tree"]

@dataclass
class Node:
    """One component config in the tree: where it is and what it names."""

    path: str
    kind: str
    type: str
    args: dict
    children: list["Node"] = field(default_factory=list)


@dataclass
class _Context:
    filename: str | None
    roots: list[Node]


_state = threading.local()


def _active() -> _Context | None:
    return getattr(_state, "context", None)


def file_note(filename: str | None) -> str:
    return f" (config file {filename})" if filename else ""


# ------------------------------------------------------------- trial builds
def _resolve_node(stack: list[tuple[str, str, dict]]) -> tuple[Node | None, bool]:
    """The config node of the innermost component of ``stack`` (or of the
    deepest one found), and whether it is the innermost one itself."""
    context = _active()
    if context is None or not stack:
        return None, False
    candidates, node = context.roots, None
    for depth, (kind, name, args) in enumerate(stack):
        matches = [n for n in candidates if n.type == name]
        if depth == 0:  # the validated config's own model, not some other build
            matches = [n for n in matches if _args_match(n.args, args)]
        if not matches:
            return node, False
        if len(matches) > 1:
            exact = [n for n in matches if _args_match(n.args, args)]
            matches = exact or matches
        node = matches[0]
        candidates = node.children
    return node, node is not None


def _resolve_path(stack: list[tuple[str, str, dict]]) -> str | None:
    """The config key path of the innermost component of ``stack``."""
    node, _ = _resolve_node(stack)
    return node.path if node is not None else None


def _args_match(original: dict, built: dict) -> bool:
    try:
        return all(k in built and bool(built[k] == v) for k, v in original.items())
    except Exception:
        return False


def argument_named(exc: BaseException, args: dict) -> str | None:
    text = str(exc)
    # a filled-in input_shape stands for the in_channels / strides it gives
    shaped = ("in_channels", "in_strides", "strides") if "input_shape" in args else ()
    for key in (*args, *shaped):
        if re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", text):
            return key
    return None


def locate(stack: list) -> str:
    """" (config key 'model.neck', config file F)" for the innermost
    component of ``stack``, or "" when the config was not validated."""
    path = _resolve_path(stack)
    if path is None:
        return ""
    context = _active()
    file = f", config file {context.filename}" if context and context.filename else ""
    return f" (config key '{path}'{file})"


def describe_build_error(exc: BaseException, kind: str, name: str, args: dict,
                         stack: list) -> ToolboxError:
    """``exc`` (a constructor's ValueError/TypeError) as a :class:`ToolboxError`
    naming the component, its config key path and the config file."""
    context = _active()
    node, exact = _resolve_node(stack)
    path = node.path if node is not None else None
    if path is None:
        chain = " > ".join(f"{k} '{n}'" for k, n, _ in stack[:-1])
        place = f" (built inside {chain})" if chain else ""
    else:
        place = ""
    set_in_config = node.args if (node is not None and exact) else args
    key = argument_named(exc, set_in_config) or argument_named(exc, args)
    filled = key is not None and node is not None and exact and key not in node.args
    if path is not None:
        where = f"{path}.{key}" if key and not filled else path
        place = f" at config key '{where}'{file_note(context.filename if context else None)}"
        fix = (f" '{key}' is not set in the config but filled in by the toolbox from the "
               f"part before it; check that part, or set {path}.{key}." if filled
               else f" Fix {where} in the config.")
    else:
        fix = f" Fix the '{key}' argument." if key else ""
    cause = str(exc).rstrip(". ")
    message = f"{kind} '{name}'{place} rejected its arguments: {cause}.{fix}"
    cls = ConfigArgumentError if isinstance(exc, TypeError) else ConfigValueError
    return cls(message)


@contextlib.contextmanager
def config_context(filename: str | None, roots: list[Node]):
    """Make build errors name config key paths of this config (and its file)."""
    previous = _active()
    _state.context = _Context(filename, roots)
    try:
        yield
    finally:
        _state.context = previous


def set_config_tree(filename: str | None, roots: list[Node]) -> None:
    """Make later build errors name config key paths of this config tree."""
    _state.context = _Context(filename, roots)
