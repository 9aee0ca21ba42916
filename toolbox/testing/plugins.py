"""Isolating the toolbox's plugin state in tests, and fake distributions.

The plugin table is process-wide (loaded once, on the first registry
lookup). A test that installs, hides or breaks a plugin must reload it
before and after; :func:`isolated_plugins` and the ``toolbox_plugins``
fixture (:mod:`toolbox.testing.fixtures`) do that.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import textwrap
from pathlib import Path
from typing import Iterator

__all__ = ["isolated_plugins", "make_distribution", "forget_modules_under"]


@contextlib.contextmanager
def isolated_plugins(**environ: str | None) -> Iterator[None]:
    """Reload the plugins with ``environ`` set (``None`` unsets a variable),
    and restore the environment and a fresh plugin state afterwards::

        with isolated_plugins(TOOLBOX_PLUGINS="my_plugin"):
            NECKS.get("MyNeck")
    """
    from toolbox.plugins import reset
    saved = {k: os.environ.get(k) for k in environ}
    try:
        for key, value in environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        importlib.invalidate_caches()
        reset()
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset()


def make_distribution(site: str | Path, dist: str, version: str, module: str, source: str,
                      ep_name: str | None = None, group: str = "toolbox.plugins") -> Path:
    """Write module ``module`` (``source``) and a ``*.dist-info`` declaring it
    as entry point ``ep_name`` (default: ``dist``) into ``site``, a folder on
    ``sys.path``: a real distribution as ``importlib.metadata`` sees it,
    without running pip. Returns the module's path."""
    site = Path(site)
    path = site / f"{module}.py"
    path.write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{ep_name or dist} = {module}\n")
    importlib.invalidate_caches()
    return path


def forget_modules_under(folder: str | Path) -> None:
    """Drop from ``sys.modules`` every module imported from ``folder``."""
    folder = str(folder)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(folder):
            del sys.modules[name]
