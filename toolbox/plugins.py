"""Plugin discovery and loading, on top of pluggy.

Distributions declare an entry point in the ``toolbox.plugins`` group; the
module it names implements hooks from :mod:`toolbox.hookspecs`. Loading is
lazy: :func:`ensure_loaded` runs on the first registry lookup.

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
import importlib.metadata as metadata
import inspect
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from toolbox import __version__, hookspecs
from toolbox.errors import PluginConflictError, PluginLoadError

ENTRY_POINT_GROUP = "toolbox.plugins"
ENV_DISABLE_AUTOLOAD = "TOOLBOX_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "TOOLBOX_PLUGINS"
ENV_STRICT = "TOOLBOX_STRICT_PLUGINS"

#: The version of the plugin contract (the hooks of :mod:`toolbox.hookspecs`
#: and the component contracts they document). The minor number grows when
#: the contract gains something; the major number when a plugin written for
#: the previous one may break. Plugins declare what they support with a
#: module attribute ``TOOLBOX_API = ">=1,<2"``.
API_VERSION = "1.0"
#: The module attribute a plugin declares its supported API range in.
API_ATTRIBUTE = "TOOLBOX_API"

hookimpl = pluggy.HookimplMarker("toolbox")
logger = logging.getLogger("toolbox.plugins")

_HOOK_NAMES = tuple(f"toolbox_{p}" for p in hookspecs.HOOK_POINTS)


class PluginWarning(UserWarning):
    """Something about the installed plugins needs the user's attention."""


class PluginImportWarning(PluginWarning):
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


@dataclass
class Failure:
    """A plugin that failed to import, to answer a hook, or was refused."""

    provider: Provider
    error: BaseException
    what: str                      # "import", "answer hook 'toolbox_necks'", ...
    hook_point: str | None = None  # the hook point whose hook failed, if one

    # still usable as the (provider, error) tuple the failures list used to hold
    def __iter__(self):
        return iter((self.provider, self.error))

    def __getitem__(self, index):
        return (self.provider, self.error)[index]

    def __len__(self):
        return 2


@dataclass
class Conflict:
    """Two or more plugins registering one name in one hook point."""

    point: str
    name: str
    providers: list[Provider] = field(default_factory=list)
    overrides: bool = False

    def message(self) -> str:
        both = " and ".join(str(p) for p in self.providers)
        if self.overrides:
            return (f"two plugins override '{self.name}' in hook point '{self.point}': "
                    f"{both}; uninstall one or exclude one with {ENV_PLUGINS}=no:<plugin>.")
        return (f"two plugins register '{self.name}' in hook point '{self.point}': {both}. "
                f"Uninstall one, exclude one with {ENV_PLUGINS}=no:<plugin>, or have one "
                f"return toolbox.plugins.override({self.name}) to replace the other on purpose.")


def _flag(environ, name: str) -> bool:
    return environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _provider_of(entry_point) -> Provider:
    dist = entry_point.dist
    if dist is None:
        return Provider(entry_point.name, "<unknown distribution>", "?")
    return Provider(entry_point.name, dist.metadata["Name"], dist.version)


def _ep_names(ep) -> set[str]:
    return {ep.name, ep.dist.metadata["Name"] if ep.dist else ep.name}


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


def check_api_version(plugin, provider: Provider) -> None:
    """Refuse a plugin whose declared ``TOOLBOX_API`` range excludes
    :data:`API_VERSION` (a :class:`PluginLoadError` naming both)."""
    wanted = getattr(plugin, API_ATTRIBUTE, None)
    if wanted is None:
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    try:
        spec = SpecifierSet(str(wanted))
    except InvalidSpecifier:
        raise PluginLoadError(
            f"plugin {provider} declares {API_ATTRIBUTE} = {wanted!r}, which is not a "
            f"version range; write e.g. {API_ATTRIBUTE} = \">=1,<2\"") from None
    if not spec.contains(API_VERSION, prereleases=True):
        raise PluginLoadError(
            f"plugin {provider} supports toolbox plugin API {wanted} but this toolbox "
            f"({builtin_provider().version}) provides plugin API {API_VERSION}; install a "
            f"{provider.distribution} release made for plugin API {API_VERSION}, or a "
            f"toolbox whose plugin API is in {wanted}")


def hook_problems(plugin) -> list[str]:
    """What is wrong with a plugin's hook functions, as sentences (empty: fine).

    Catches a marked function whose name is no hook (``toolbox_loss``), a
    function named like a hook but not marked ``@hookimpl``, and a plugin
    that implements no hook at all (it would register nothing).
    """
    problems, implemented = [], 0
    where = getattr(plugin, "__name__", type(plugin).__name__)
    for attr in dir(plugin):
        if not attr.startswith("toolbox_"):
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:  # pragma: no cover - odd descriptors
            continue
        if inspect.isclass(value) or inspect.ismodule(value) or not callable(value):
            continue
        marked = hasattr(value, "toolbox_impl")
        if attr in _HOOK_NAMES:
            if marked:
                implemented += 1
            else:
                problems.append(
                    f"function '{attr}' in {where} is not marked @hookimpl, so it is never "
                    "called; decorate it with @toolbox.plugins.hookimpl")
            continue
        close = difflib.get_close_matches(attr, _HOOK_NAMES, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        if marked or close:
            problems.append(f"'{attr}' in {where} is not a toolbox hook, so it registers "
                            f"nothing.{hint} Hooks: {', '.join(_HOOK_NAMES)}")
    if not implemented and not problems:
        problems.append(f"{where} implements no toolbox hook, so it registers nothing; "
                        f"define @hookimpl functions named {', '.join(_HOOK_NAMES)}")
    return problems


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
        if _flag(self.environ, ENV_DISABLE_AUTOLOAD):
            self._skip(eps, f"{ENV_DISABLE_AUTOLOAD}=1 disables plugin autoloading")
            return []
        wanted = [s.strip() for s in self.environ.get(ENV_PLUGINS, "").split(",") if s.strip()]
        excluded = {s[3:] for s in wanted if s.startswith("no:")}
        allowed = {s for s in wanted if not s.startswith("no:")}
        known = set().union(*(_ep_names(ep) for ep in eps)) if eps else set()
        self._warn_unknown_names(sorted((allowed | excluded) - known - {"builtin", "toolbox"}),
                                 eps)
        keep = []
        for ep in eps:
            if _ep_names(ep) & excluded:
                self._skip([ep], f"excluded by {ENV_PLUGINS}={self.environ.get(ENV_PLUGINS)}")
            elif allowed and not _ep_names(ep) & allowed:
                self._skip([ep], f"not in the allow-list "
                                 f"{ENV_PLUGINS}={self.environ.get(ENV_PLUGINS)}")
            else:
                keep.append(ep)
        return keep

    def _skip(self, eps, reason: str) -> None:
        for ep in eps:
            self.skipped.append((_provider_of(ep), reason))
            self._skipped_eps.append(ep)

    def _warn_unknown_names(self, unknown: list[str], eps) -> None:
        if not unknown:
            return
        installed = ", ".join(f"{ep.name} ({_provider_of(ep).distribution})" for ep in eps)
        names = sorted(set().union(*(_ep_names(ep) for ep in eps))) if eps else []
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
            strict = _flag(self.environ, ENV_STRICT)
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
                items = _as_items(point, prov, result)
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
                    return any(n == name for n, _ in _as_items(point, _provider_of(ep), result))
            except Exception:
                return None
        return None


_lock = threading.RLock()
_manager: PluginManager | None = None
_table: dict[str, dict[str, Registration]] | None = None
_collecting = threading.local()


def ensure_loaded(strict: bool | None = None) -> dict[str, dict[str, Registration]]:
    """Load all plugins into the toolbox registries, once per process."""
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
        from toolbox import registry
        manager = PluginManager()
        _collecting.active = True
        try:
            table = manager.collect(strict=strict)
        finally:
            _collecting.active = False
        for point, regs in table.items():
            reg = registry.REGISTRIES[point]
            for r in regs.values():
                reg.add_component(r.name, r.component, r.provider)
            for name, clash in manager.conflicts.get(point, {}).items():
                reg.add_conflict(name, clash.message())
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
    """Forget what was loaded (tests, or after ``pip install`` in-process)."""
    global _manager, _table
    from toolbox import registry
    with _lock:
        _manager, _table = None, None
        registry.clear_plugin_components()
