"""What the plugin machinery records and checks: providers, registrations,
failures, name clashes, the plugin API version and a plugin's hook problems.

The plugin manager (:mod:`toolbox.plugins`) builds these; ``toolbox plugins``
and the registries read them. Nothing here imports a plugin or a registry.
"""
from __future__ import annotations

import difflib
import importlib.metadata as metadata
import inspect
from dataclasses import dataclass, field
from typing import Any, Iterable

from toolbox import __version__, hookspecs
from toolbox.errors import PluginLoadError

ENTRY_POINT_GROUP = "toolbox.plugins"
ENV_DISABLE_AUTOLOAD = "TOOLBOX_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "TOOLBOX_PLUGINS"
ENV_STRICT = "TOOLBOX_STRICT_PLUGINS"

#: The version of the plugin contract (the hooks of :mod:`toolbox.hookspecs`
#: and the component contracts they document). The minor number grows when
#: the contract gains something; the major number when a plugin written for
#: the previous one may break. Plugins declare what they support with a
#: module attribute ``TOOLBOX_API = ">=1,<2"``. 1.1 added the ``hooks`` and
#: ``functions`` hook points.
API_VERSION = "1.1"
#: The module attribute a plugin declares its supported API range in.
API_ATTRIBUTE = "TOOLBOX_API"

HOOK_NAMES = tuple(f"toolbox_{p}" for p in hookspecs.HOOK_POINTS)


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


def flag(environ, name: str) -> bool:
    return environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def provider_of(entry_point) -> Provider:
    dist = entry_point.dist
    if dist is None:
        return Provider(entry_point.name, "<unknown distribution>", "?")
    return Provider(entry_point.name, dist.metadata["Name"], dist.version)


def ep_names(ep) -> set[str]:
    return {ep.name, ep.dist.metadata["Name"] if ep.dist else ep.name}


def builtin_provider() -> Provider:
    try:
        version = metadata.version("toolbox")
    except metadata.PackageNotFoundError:
        version = __version__
    return Provider("builtin", "toolbox", version)


def as_items(point: str, provider: Provider, result: Any) -> Iterable[tuple[str, Any]]:
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
        if attr in HOOK_NAMES:
            if marked:
                implemented += 1
            else:
                problems.append(
                    f"function '{attr}' in {where} is not marked @hookimpl, so it is never "
                    "called; decorate it with @toolbox.plugins.hookimpl")
            continue
        close = difflib.get_close_matches(attr, HOOK_NAMES, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        if marked or close:
            problems.append(f"'{attr}' in {where} is not a toolbox hook, so it registers "
                            f"nothing.{hint} Hooks: {', '.join(HOOK_NAMES)}")
    if not implemented and not problems:
        problems.append(f"{where} implements no toolbox hook, so it registers nothing; "
                        f"define @hookimpl functions named {', '.join(HOOK_NAMES)}")
    return problems
