"""Plugin discovery and loading, on top of pluggy.

Distributions declare an entry point in the ``toolbox.plugins`` group; the
module it names implements hooks from :mod:`toolbox.hookspecs`. Loading is
lazy: :func:`ensure_loaded` runs on the first registry lookup. This module
finds, imports and calls the plugins and returns what they provide (the
table); :mod:`toolbox.registry` fills its registries from that table. The
built-in components are plugins too, imported by name from
:data:`BUILTIN_PLUGINS` (as pytest loads its default plugins).

Environment variables (the ``-p no:name`` spirit of pytest):

``TOOLBOX_DISABLE_PLUGIN_AUTOLOAD=1``
    load only the built-in components, no entry points.
``TOOLBOX_PLUGINS=a,b``
    allow-list: load only these plugins (entry-point or distribution names);
    ``no:a`` entries exclude a plugin instead. A name that matches no
    installed plugin is warned about, with the installed names.
``TOOLBOX_STRICT_PLUGINS=1``
    a plugin that fails to import is an error instead of a warning.

Nothing fails silently: a plugin module that implements no known hook, a
function named like a hook but not marked ``@hookimpl``, a marked function
with a misspelled hook name, an unknown allow-list name, all warn
(:class:`PluginWarning`). Two plugins registering one name is an error only
when that name is looked up (and a line in ``toolbox plugins``).

Plugin API version: :data:`API_VERSION`. A plugin module may declare the
range it supports as ``TOOLBOX_API = ">=1,<2"`` (a PEP 440 specifier); a
toolbox outside that range refuses the plugin with a message naming both.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import logging
import os
import threading
import warnings

import pluggy

from toolbox import hookspecs
from toolbox.errors import PluginLoadError
from toolbox.hookspecs import hookimpl
from toolbox.plugin_records import (API_ATTRIBUTE, API_VERSION, ENTRY_POINT_GROUP,  # noqa: F401
                                    ENV_DISABLE_AUTOLOAD, ENV_PLUGINS, ENV_STRICT, Conflict,
                                    Failure, Override, PluginImportWarning, PluginWarning,
                                    Provider, Registration, as_items, builtin_provider,
                                    check_api_version, ep_names, flag, hook_problems, override,
                                    provider_of)

__all__ = ["API_VERSION", "PluginImportWarning", "PluginManager", "PluginWarning", "Provider",
           "ensure_loaded", "hookimpl", "loaded_manager", "override", "overrides_in_effect",
           "reset"]

#: The built-in plugins: modules the manager imports and registers by name,
#: before the entry points, as ``pytest`` does with its default plugins.
BUILTIN_PLUGINS = ("toolbox.builtin",)

logger = logging.getLogger("toolbox.plugins")


def _builtin_name(module_name: str) -> str:
    """The plugin name of a built-in module: ``builtin`` for toolbox.builtin."""
    return module_name.rsplit(".", 1)[-1] if module_name == BUILTIN_PLUGINS[0] else module_name


class PluginManager:
    """Finds plugins, calls their hooks, and resolves name clashes."""

    def __init__(self, group: str = ENTRY_POINT_GROUP, *, builtins: bool = True,
                 environ: dict | None = None):
        self.group = group
        self.builtins = builtins
        self.environ = os.environ if environ is None else environ
        self.failures: list[Failure] = []
        self.plugins: list[Provider] = []
        #: entry points left out by the environment: (provider, reason)
        self.skipped: list[tuple[Provider, str]] = []
        self.conflicts: dict[str, dict[str, Conflict]] = {}
        self.overrides: list[Registration] = []
        self._skipped_eps: list = []
        self._pm = pluggy.PluginManager("toolbox")
        self._pm.add_hookspecs(hookspecs)

    # -- discovery ---------------------------------------------------------
    def installed(self) -> list:
        """Every entry point of the group, whatever the environment says."""
        return sorted(metadata.entry_points(group=self.group), key=lambda e: e.name)

    def entry_points(self) -> list:
        """The entry points this environment and the env variables allow."""
        eps = self.installed()
        self.skipped, self._skipped_eps = [], []
        if flag(self.environ, ENV_DISABLE_AUTOLOAD):
            self._skip(eps, f"{ENV_DISABLE_AUTOLOAD}=1 disables plugin autoloading")
            return []
        wanted = [s.strip() for s in self.environ.get(ENV_PLUGINS, "").split(",") if s.strip()]
        excluded = {s[3:] for s in wanted if s.startswith("no:")}
        allowed = {s for s in wanted if not s.startswith("no:")}
        known = set().union(*(ep_names(ep) for ep in eps)) if eps else set()
        self._warn_unknown_names(sorted((allowed | excluded) - known - {"builtin", "toolbox"}),
                                 eps)
        keep = []
        for ep in eps:
            if ep_names(ep) & excluded:
                self._skip([ep], f"excluded by {ENV_PLUGINS}={self.environ.get(ENV_PLUGINS)}")
            elif allowed and not ep_names(ep) & allowed:
                self._skip([ep], f"not in the allow-list "
                                 f"{ENV_PLUGINS}={self.environ.get(ENV_PLUGINS)}")
            else:
                keep.append(ep)
        return keep

    def _skip(self, eps, reason: str) -> None:
        for ep in eps:
            self.skipped.append((provider_of(ep), reason))
            self._skipped_eps.append(ep)

    def _warn_unknown_names(self, unknown: list[str], eps) -> None:
        if not unknown:
            return
        installed = ", ".join(f"{ep.name} ({provider_of(ep).distribution})" for ep in eps)
        names = sorted(set().union(*(ep_names(ep) for ep in eps))) if eps else []
        for name in unknown:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            warnings.warn(
                f"{ENV_PLUGINS} names '{name}', which is no installed plugin.{hint} "
                f"Installed plugins: {installed or '(none besides the built-ins)'}.",
                PluginWarning, stacklevel=4)

    def _fail(self, provider: Provider, exc: BaseException, what: str, strict: bool,
              hook_point: str | None = None):
        self.failures.append(Failure(provider, exc, what, hook_point))
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
            for module_name in BUILTIN_PLUGINS:
                prov = builtin_provider()
                name = _builtin_name(module_name)
                if name != prov.plugin:
                    prov = Provider(name, prov.distribution, prov.version)
                self._pm.register(importlib.import_module(module_name), name=name)
                providers[name] = prov
        for ep in self.entry_points():
            prov = provider_of(ep)
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break the rest
                self._fail(prov, exc, "import", strict)
                continue
            try:
                check_api_version(plugin, prov)
            except PluginLoadError as exc:
                self._fail(prov, exc, "load (incompatible plugin API)", strict)
                continue
            if self._pm.is_registered(plugin):
                continue
            for problem in hook_problems(plugin):
                warnings.warn(f"toolbox plugin '{prov.plugin}' ({prov.distribution} "
                              f"{prov.version}): {problem}", PluginWarning, stacklevel=3)
            self._pm.register(plugin, name=prov.plugin)
            providers[prov.plugin] = prov
        self.plugins = list(providers.values())
        return providers

    # -- collection --------------------------------------------------------
    def collect(self, strict: bool | None = None) -> dict[str, dict[str, Registration]]:
        """Import the plugins, call every hook, and return the merged table.

        Names that two plugins register are left out of the table and kept in
        :attr:`conflicts`; looking one of them up is the error.
        """
        if strict is None:
            strict = flag(self.environ, ENV_STRICT)
        providers = self._register_plugins(strict)
        table: dict[str, dict[str, Registration]] = {}
        for point in hookspecs.HOOK_POINTS:
            caller = getattr(self._pm.hook, f"toolbox_{point}")
            plain, overrides = [], []
            for impl in reversed(caller.get_hookimpls()):  # registration order
                prov = providers[impl.plugin_name]
                try:
                    result = impl.function()
                except Exception as exc:  # an ImportError in a lazy hook, say
                    self._fail(prov, exc, f"answer hook 'toolbox_{point}'", strict, point)
                    continue
                items = as_items(point, prov, result)
                for name, comp in items:
                    (overrides if isinstance(comp, Override) else plain).append((name, comp, prov))
            table[point] = self._merge(point, plain, overrides)
        return table

    def _merge(self, point, plain, overrides) -> dict[str, Registration]:
        merged: dict[str, Registration] = {}
        clashes: dict[str, Conflict] = {}
        for name, comp, prov in plain:
            if name in merged and merged[name].component is not comp:
                clash = clashes.setdefault(name, Conflict(point, name, [merged[name].provider]))
                clash.providers.append(prov)
                continue
            merged[name] = Registration(name, comp, prov)
        overridden: dict[str, Provider] = {}
        for name, wrapped, prov in overrides:
            if name in overridden:
                clash = clashes.setdefault(name, Conflict(point, name, [overridden[name]],
                                                          overrides=True))
                clash.overrides = True
                clash.providers.append(prov)
                continue
            overridden[name] = prov
            old = merged.get(name)
            if name in clashes and not clashes[name].overrides:
                del clashes[name]  # an explicit override settles a plain clash
            merged[name] = Registration(name, wrapped.component, prov,
                                        replaced=old.provider if old else None)
            if old is not None:
                self.overrides.append(merged[name])
                logger.info("%s: '%s' from %s overrides the one from %s",
                            point, name, prov, old.provider)
        for name in clashes:
            merged.pop(name, None)
        self.overrides = [r for r in self.overrides if r.name not in clashes]
        self.conflicts[point] = clashes
        return merged

    # -- explaining a missing name ------------------------------------------
    def explain_missing(self, point: str, name: str) -> str:
        """Sentences on why ``name`` may be missing from hook point ``point``:
        plugins that failed, or that the environment left out, and whether
        one of those provides the name. Empty when there is nothing to say."""
        lines = []
        for failure in self.failures:
            prov = failure.provider
            if failure.hook_point not in (None, point):
                continue
            cause = f"{type(failure.error).__name__}: {failure.error}"
            provides = self._probe(failure.provider.plugin, point, name)
            tail = (f"; it provides '{name}'" if provides else
                    "; it may be the one providing this name" if provides is None else "")
            lines.append(f"plugin '{prov.plugin}' ({prov.distribution} {prov.version}) "
                         f"failed to {failure.what} ({cause}){tail}.")
        for prov, reason in self.skipped:
            provides = self._probe(prov.plugin, point, name)
            if provides:
                lines.append(f"'{name}' is provided by plugin '{prov.plugin}' "
                             f"({prov.distribution} {prov.version}), which is not loaded: "
                             f"{reason}.")
        others = [p for p, _ in self.skipped if not self._probe(p.plugin, point, name)]
        if others and not lines:
            reasons = sorted({r for _, r in self.skipped})
            lines.append(f"not loaded: {', '.join(p.plugin for p in others)} "
                         f"({'; '.join(reasons)}).")
        return " ".join(lines)

    def _probe(self, plugin_name: str, point: str, name: str) -> bool | None:
        """Whether the entry point ``plugin_name`` provides ``name`` in ``point``
        (loads it aside, registering nothing); None when that cannot be told."""
        for ep in self.installed():
            if ep.name != plugin_name:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    module = ep.load()
                    hook = getattr(module, f"toolbox_{point}", None)
                    if hook is None:
                        return False
                    result = hook()
                    return any(n == name for n, _ in as_items(point, provider_of(ep), result))
            except Exception:
                return None
        return None


_lock = threading.RLock()
_manager: PluginManager | None = None
_table: dict[str, dict[str, Registration]] | None = None
_collecting = threading.local()


def ensure_loaded(strict: bool | None = None) -> dict[str, dict[str, Registration]]:
    """Import and call the plugins, once per process; returns the table
    ``hook point -> name -> Registration`` (the registries are filled from it
    by :mod:`toolbox.registry` on their next lookup)."""
    global _manager, _table
    with _lock:
        if _table is not None:
            return _table
        if getattr(_collecting, "active", False):
            raise PluginLoadError(
                "a registry was looked up while the plugins are being loaded (from a "
                "hook or at a plugin module's top level); registries are filled only "
                "after every hook has answered. To reuse or wrap a built-in, import its "
                "class, e.g. `from toolbox.models.necks.fpn import FPN`")
        manager = PluginManager()
        _collecting.active = True
        try:
            table = manager.collect(strict=strict)
        finally:
            _collecting.active = False
        _manager, _table = manager, table
        return _table


def loaded_manager() -> PluginManager:
    ensure_loaded()
    assert _manager is not None
    return _manager


def overrides_in_effect() -> list[str]:
    """One line per component that an ``override()`` replaced, for startup."""
    return [f"{r.name} from {r.provider} overrides the one from {r.replaced}"
            for r in loaded_manager().overrides]


def reset() -> None:
    """Forget what was loaded (tests, or after ``pip install`` in-process);
    the registries drop the plugins' components on their next lookup."""
    global _manager, _table
    with _lock:
        _manager, _table = None, None
