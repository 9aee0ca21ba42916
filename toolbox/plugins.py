"""Plugin discovery and loading, on top of pluggy.

Distributions declare an entry point in the ``toolbox.plugins`` group; the
module it names implements hooks from :mod:`toolbox.hookspecs`. Loading is
lazy: :func:`ensure_loaded` runs on the first registry lookup.

Environment variables (the ``-p no:name`` spirit of pytest):

``TOOLBOX_DISABLE_PLUGIN_AUTOLOAD=1``
    load only the built-in components, no entry points.
``TOOLBOX_PLUGINS=a,b``
    allow-list: load only these plugins (entry-point or distribution names);
    ``no:a`` entries exclude a plugin instead.
``TOOLBOX_STRICT_PLUGINS=1``
    a plugin that fails to import is an error instead of a warning.
"""
from __future__ import annotations

import importlib.metadata as metadata
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy

from toolbox import __version__, hookspecs
from toolbox.errors import PluginConflictError, PluginLoadError

ENTRY_POINT_GROUP = "toolbox.plugins"
ENV_DISABLE_AUTOLOAD = "TOOLBOX_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "TOOLBOX_PLUGINS"
ENV_STRICT = "TOOLBOX_STRICT_PLUGINS"

hookimpl = pluggy.HookimplMarker("toolbox")
logger = logging.getLogger("toolbox.plugins")


class PluginImportWarning(UserWarning):
    """A plugin could not be loaded; the other plugins still were."""


@dataclass(frozen=True)
class Provider:
    """Where a component came from: plugin name, distribution and version."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} (plugin '{self.plugin}')"


@dataclass(frozen=True)
class Override:
    """Marks a hook result that deliberately replaces another provider's."""

    component: Any


def override(component: Any) -> Override:
    """Wrap a component so it replaces a same-named one from another plugin."""
    return Override(component)


@dataclass
class Registration:
    name: str
    component: Any
    provider: Provider
    replaced: Provider | None = None


def _flag(environ, name: str) -> bool:
    return environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _provider_of(entry_point) -> Provider:
    dist = entry_point.dist
    if dist is None:
        return Provider(entry_point.name, "<unknown distribution>", "?")
    return Provider(entry_point.name, dist.metadata["Name"], dist.version)


def builtin_provider() -> Provider:
    try:
        version = metadata.version("toolbox")
    except metadata.PackageNotFoundError:
        version = __version__
    return Provider("builtin", "toolbox", version)


def _as_items(point: str, provider: Provider, result: Any) -> Iterable[tuple[str, Any]]:
    if result is None:
        return []
    if isinstance(result, dict):
        return list(result.items())
    if isinstance(result, (list, tuple)):
        items = []
        for comp in result:
            inner = comp.component if isinstance(comp, Override) else comp
            items.append((inner.__name__, comp))
        return items
    raise PluginLoadError(
        f"plugin {provider}: hook 'toolbox_{point}' must return a list of "
        f"classes or a dict name -> class, got {type(result).__name__}")


class PluginManager:
    """Finds plugins, calls their hooks, and resolves name clashes."""

    def __init__(self, group: str = ENTRY_POINT_GROUP, *, builtins: bool = True,
                 environ: dict | None = None):
        self.group = group
        self.builtins = builtins
        self.environ = os.environ if environ is None else environ
        self.failures: list[tuple[Provider, BaseException]] = []
        self.plugins: list[Provider] = []
        self._pm = pluggy.PluginManager("toolbox")
        self._pm.add_hookspecs(hookspecs)

    # -- discovery ---------------------------------------------------------
    def entry_points(self) -> list:
        """The entry points this environment and the env variables allow."""
        if _flag(self.environ, ENV_DISABLE_AUTOLOAD):
            return []
        eps = sorted(metadata.entry_points(group=self.group), key=lambda e: e.name)
        wanted = [s.strip() for s in self.environ.get(ENV_PLUGINS, "").split(",") if s.strip()]
        excluded = {s[3:] for s in wanted if s.startswith("no:")}
        allowed = {s for s in wanted if not s.startswith("no:")}

        def names(ep):
            return {ep.name, ep.dist.metadata["Name"] if ep.dist else ep.name}

        eps = [ep for ep in eps if not names(ep) & excluded]
        if allowed:
            eps = [ep for ep in eps if names(ep) & allowed]
        return eps

    def _fail(self, provider: Provider, exc: BaseException, what: str, strict: bool):
        self.failures.append((provider, exc))
        message = (f"toolbox plugin '{provider.plugin}' from distribution "
                   f"{provider.distribution} {provider.version} failed to {what}: "
                   f"{type(exc).__name__}: {exc}")
        if strict:
            raise PluginLoadError(message) from exc
        warnings.warn(f"{message}. The other plugins are still loaded; set "
                      f"{ENV_STRICT}=1 to make this an error.",
                      PluginImportWarning, stacklevel=3)

    def _register_plugins(self, strict: bool) -> dict[str, Provider]:
        providers: dict[str, Provider] = {}
        if self.builtins:
            from toolbox import builtin
            prov = builtin_provider()
            self._pm.register(builtin, name=prov.plugin)
            providers[prov.plugin] = prov
        for ep in self.entry_points():
            prov = _provider_of(ep)
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break the rest
                self._fail(prov, exc, "import", strict)
                continue
            if self._pm.is_registered(plugin):
                continue
            self._pm.register(plugin, name=prov.plugin)
            providers[prov.plugin] = prov
        self.plugins = list(providers.values())
        return providers

    # -- collection --------------------------------------------------------
    def collect(self, strict: bool | None = None) -> dict[str, dict[str, Registration]]:
        """Import the plugins, call every hook, and return the merged table."""
        if strict is None:
            strict = _flag(self.environ, ENV_STRICT)
        providers = self._register_plugins(strict)
        table: dict[str, dict[str, Registration]] = {}
        for point in hookspecs.HOOK_POINTS:
            caller = getattr(self._pm.hook, f"toolbox_{point}")
            plain, overrides = [], []
            for impl in reversed(caller.get_hookimpls()):  # registration order
                prov = providers[impl.plugin_name]
                try:
                    items = _as_items(point, prov, impl.function())
                except PluginLoadError:
                    raise
                except Exception as exc:
                    self._fail(prov, exc, f"answer hook 'toolbox_{point}'", strict)
                    continue
                for name, comp in items:
                    (overrides if isinstance(comp, Override) else plain).append((name, comp, prov))
            table[point] = self._merge(point, plain, overrides)
        return table

    @staticmethod
    def _merge(point, plain, overrides) -> dict[str, Registration]:
        merged: dict[str, Registration] = {}
        for name, comp, prov in plain:
            if name in merged and merged[name].component is not comp:
                first = merged[name].provider
                raise PluginConflictError(
                    f"two plugins register '{name}' in hook point '{point}': "
                    f"{first} and {prov}. Uninstall one, exclude one with "
                    f"{ENV_PLUGINS}=no:<plugin>, or have one return "
                    f"toolbox.plugins.override({name}) to replace the other on purpose.")
            merged[name] = Registration(name, comp, prov)
        overridden: dict[str, Provider] = {}
        for name, wrapped, prov in overrides:
            if name in overridden:
                raise PluginConflictError(
                    f"two plugins override '{name}' in hook point '{point}': "
                    f"{overridden[name]} and {prov}; keep one of them.")
            overridden[name] = prov
            old = merged.get(name)
            merged[name] = Registration(name, wrapped.component, prov,
                                        replaced=old.provider if old else None)
            if old is not None:
                logger.info("%s: '%s' from %s overrides the one from %s",
                            point, name, prov, old.provider)
        return merged


_lock = threading.RLock()
_manager: PluginManager | None = None
_table: dict[str, dict[str, Registration]] | None = None


def ensure_loaded(strict: bool | None = None) -> dict[str, dict[str, Registration]]:
    """Load all plugins into the toolbox registries, once per process."""
    global _manager, _table
    with _lock:
        if _table is not None:
            return _table
        from toolbox import registry
        manager = PluginManager()
        table = manager.collect(strict=strict)
        for point, regs in table.items():
            reg = registry.REGISTRIES[point]
            for r in regs.values():
                reg.add_component(r.name, r.component, r.provider)
        _manager, _table = manager, table
        return _table


def loaded_manager() -> PluginManager:
    ensure_loaded()
    assert _manager is not None
    return _manager


def reset() -> None:
    """Forget what was loaded (tests, or after ``pip install`` in-process)."""
    global _manager, _table
    from toolbox import registry
    with _lock:
        _manager, _table = None, None
        registry.clear_plugin_components()
