"""One presentation for the toolbox's errors in every command.

A :class:`~toolbox.errors.ToolboxError` (config, data, checkpoint, plugin,
non-finite training) reaching a ``tools/*.py`` script or a ``toolbox``
subcommand is printed as one short block on stderr::

    error (checkpoint): cannot resume from 'work_dirs/x/epoch_3.pth': ...
      fix: ...
      (add --debug, or set TOOLBOX_DEBUG=1, for the traceback)

and the command exits with status 2. ``--debug`` (or ``TOOLBOX_DEBUG=1``)
re-raises instead, so the full traceback is printed.

Also here: :func:`load_config` (a config that fails to parse is reported
with its real file and line, also when the error is in a ``_base_`` file)
and :class:`CfgOptionsAction` (``--cfg-options`` entries must be
``KEY=VALUE``; a malformed one is reported with the accepted form).
"""
from __future__ import annotations

import ast
import os
import os.path as osp
import re
import sys
from typing import Callable, Sequence

from mmengine.config import Config, DictAction

from toolbox.errors import (CheckpointError, ConfigError, DataError, NonFiniteLossError,
                            PluginConflictError, PluginLoadError, ToolboxError,
                            UnsafeCheckpointError)

EXIT_STATUS = 2
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
CFG_OPTIONS_FORM = ("KEY=VALUE, KEY a dotted config path (e.g. train_cfg.max_epochs=3, "
                    "optim_wrapper.optimizer.lr=0.01, test_evaluator.0.iou_thrs=[0.5], "
                    "model.backbone.type=ResNet)")


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("TOOLBOX_DEBUG", "") not in ("", "0")


def _kind(exc: BaseException) -> str:
    if isinstance(exc, (CheckpointError, UnsafeCheckpointError)) or \
            type(exc).__name__ == "CheckpointMismatchError":
        return "checkpoint"
    if isinstance(exc, DataError) or type(exc).__name__.endswith(("DataError", "ImageError")):
        return "data"
    if isinstance(exc, (PluginConflictError, PluginLoadError)):
        return "plugin"
    if isinstance(exc, NonFiniteLossError):
        return "training"
    return "config"


def format_error(exc: BaseException) -> str:
    """The short block printed for a toolbox error (no traceback)."""
    text = str(exc).strip() or type(exc).__name__
    lines = text.splitlines()
    block = [f"error ({_kind(exc)}): {lines[0]}"] + [f"  {line}" for line in lines[1:]]
    block.append("  (add --debug, or set TOOLBOX_DEBUG=1, for the traceback)")
    return "\n".join(block)


def run_main(main: Callable[[list], object], argv: Sequence[str] | None = None):
    """Call ``main(argv)``; a :class:`ToolboxError` becomes one short block on
    stderr and exit status 2 (re-raised with ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except ToolboxError as exc:
        if debug_requested(argv):
            raise
        sys.stdout.flush()
        print(format_error(exc), file=sys.stderr)
        sys.exit(EXIT_STATUS)


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction``, refusing entries that are not ``KEY=VALUE``."""

    def __call__(self, parser, namespace, values, option_string=None):
        for entry in values or []:
            key, sep, _ = entry.partition("=")
            if not sep or not _KEY.fullmatch(key.strip()):
                why = "has no '='" if not sep else f"has an invalid key {key!r}"
                raise ConfigError(
                    f"--cfg-options entry {entry!r} {why}\n"
                    f"expected: {CFG_OPTIONS_FORM}\n"
                    "fix: write each override as KEY=VALUE, separated by spaces; quote values "
                    "with spaces or brackets: --cfg-options 'model.x=[1, 2]'")
        super().__call__(parser, namespace, values, option_string)


def _bases(path: str) -> list[str]:
    """The ``_base_`` files a (parseable) config names, resolved."""
    try:
        tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return []
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            values = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) \
                else [node.value]
            for v in values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    found.append(osp.normpath(osp.join(osp.dirname(path), v.value)))
    return found


def find_syntax_error(path: str, _seen=None) -> SyntaxError | None:
    """The first syntax error in ``path`` or the ``_base_`` files it names,
    with the real file name (mmengine reports ``File "<unknown>"``)."""
    seen = _seen if _seen is not None else set()
    if path in seen or not osp.isfile(path):
        return None
    seen.add(path)
    if path.endswith(".py"):
        try:
            compile(open(path, encoding="utf-8").read(), path, "exec")
        except SyntaxError as exc:
            return exc
        except (OSError, ValueError):
            return None
    for base in _bases(path):
        found = find_syntax_error(base, seen)
        if found is not None:
            return found
    return None


def load_config(path: str, cfg_options=None) -> Config:
    """``Config.fromfile`` with errors that name the file (and line)."""
    if not osp.isfile(path):
        raise ConfigError(f"config file '{path}' does not exist\n"
                          "fix: check the path (relative paths start at the current "
                          f"directory, {os.getcwd()})")
    try:
        cfg = Config.fromfile(path)
    except SyntaxError as exc:
        real = find_syntax_error(path) or exc
        where = f"{real.filename if real.filename not in (None, '<unknown>') else path}"
        line = f", line {real.lineno}" if real.lineno else ""
        source = (real.text or "").rstrip()
        raise ConfigError(
            f"config file '{where}'{line} does not parse: {real.msg}"
            + (f"\n  {source.strip()}" if source else "")
            + "\nfix: correct the Python syntax at that line"
            + (f" (the file is a _base_ of {path})" if osp.abspath(where) != osp.abspath(path)
               else "")) from exc
    except (FileNotFoundError, KeyError, NameError, ImportError, TypeError) as exc:
        raise ConfigError(f"config file '{path}' could not be loaded: "
                          f"{type(exc).__name__}: {exc}") from exc
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"--cfg-options could not be applied to '{path}': "
                              f"{type(exc).__name__}: {exc}\nexpected: {CFG_OPTIONS_FORM}"
                              ) from exc
    return cfg
