"""pytest fixtures for plugin authors; enable them in a ``conftest.py``::

    pytest_plugins = ["toolbox.testing.fixtures"]

``toolbox_plugins``
    a fresh plugin state for one test: the plugins are reloaded on the next
    registry lookup, and again after the test. ``toolbox_plugins.env(...)``
    sets plugin environment variables for the test (and reloads);
    ``toolbox_plugins.site`` is a temporary folder on ``sys.path`` where
    ``toolbox_plugins.add(...)`` writes fake distributions.
"""
from __future__ import annotations

import importlib

import pytest

from toolbox.testing.plugins import forget_modules_under, make_distribution


class PluginState:
    def __init__(self, monkeypatch, site):
        self._monkeypatch = monkeypatch
        self.site = site

    def env(self, **environ) -> None:
        """Set (or, with ``None``, unset) environment variables, then reload."""
        for key, value in environ.items():
            if value is None:
                self._monkeypatch.delenv(key, raising=False)
            else:
                self._monkeypatch.setenv(key, str(value))
        self.reload()

    def add(self, dist: str, version: str, module: str, source: str, ep_name=None):
        """A fake distribution in :attr:`site` (see :func:`make_distribution`)."""
        path = make_distribution(self.site, dist, version, module, source, ep_name)
        self.reload()
        return path

    @staticmethod
    def reload() -> None:
        from toolbox.plugins import reset
        importlib.invalidate_caches()
        reset()


@pytest.fixture
def toolbox_plugins(monkeypatch, tmp_path_factory):
    from toolbox.plugins import reset
    site = tmp_path_factory.mktemp("toolbox_site")
    monkeypatch.syspath_prepend(str(site))
    for var in ("TOOLBOX_PLUGINS", "TOOLBOX_DISABLE_PLUGIN_AUTOLOAD", "TOOLBOX_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    reset()
    yield PluginState(monkeypatch, site)
    monkeypatch.undo()
    forget_modules_under(site)
    importlib.invalidate_caches()
    reset()
