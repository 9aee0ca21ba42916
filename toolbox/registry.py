"""One mmengine Registry per hook point, all under the ``toolbox`` scope.

``BACKBONES.build(dict(type='VoVNet', ...))`` builds whatever plugin
registered ``VoVNet``, built-in or third-party. Lookups load the plugins on
first use: :func:`toolbox.plugins.ensure_loaded` returns what the plugins
provide and :func:`load_plugins` puts it into the registries (this module
imports the plugin manager, never the other way round). Lookups explain
unknown names and check constructor arguments before calling the constructor.
"""
from __future__ import annotations

import difflib
import inspect
import threading
from typing import Any

from mmengine import registry as mme
from mmengine.registry import Registry, build_from_cfg

from toolbox import plugins
from toolbox.build_errors import describe_build_error, locate
from toolbox.errors import (ConfigArgumentError, PluginConflictError, ToolboxError,
                            UnknownComponentError)

SCOPE = "toolbox"
LIST_COMMAND = "toolbox plugins"


def _constructor_params(component) -> tuple[list[str], list[str], bool]:
    """(accepted names, required names, takes **kwargs) of a constructor."""
    target = component.__init__ if inspect.isclass(component) else component
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return [], [], True
    params = [p for p in sig.parameters.values() if p.name != "self"]
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in named if p.default is p.empty]
    return [p.name for p in named], required, var_kw


def check_arguments(component, args: dict, where: str) -> None:
    """Raise :class:`ConfigArgumentError` for unknown or missing arguments."""
    accepted, required, var_kw = _constructor_params(component)
    name = getattr(component, "__name__", repr(component))
    if not var_kw:
        for key in args:
            if key not in accepted:
                close = difflib.get_close_matches(key, accepted, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigArgumentError(
                    f"{where} '{name}' got an unknown argument '{key}'.{hint} "
                    f"Accepted arguments: {', '.join(accepted) or '(none)'}.")
    missing = [r for r in required if r not in args]
    if missing:
        raise ConfigArgumentError(
            f"{where} '{name}' is missing required argument(s): {', '.join(missing)}. "
            f"Accepted arguments: {', '.join(accepted)}.")


_building = threading.local()


def build_stack() -> list[tuple[str, str, dict]]:
    """The components being built right now, outermost first:
    ``(kind, type name, arguments)`` (used to name config key paths)."""
    if not hasattr(_building, "stack"):
        _building.stack = []
    return _building.stack


def _constructor_error(exc: Exception, kind: str, name: str, args: dict) -> ToolboxError:
    """A constructor's ``ValueError`` / ``TypeError`` as a :class:`ToolboxError`
    naming the component, the config key path and the config file."""
    return describe_build_error(exc, kind, name, args, list(build_stack()))


def build_checked(cfg: Any, registry: Registry, default_args: dict | None = None):
    """Like mmengine's ``build_from_cfg`` with argument checks and clear errors.

    A ``ValueError`` / ``TypeError`` raised by the component's constructor is
    re-raised as :class:`ConfigValueError` / :class:`ConfigArgumentError`
    naming the component, the config key path and file (when the config was
    validated by :func:`toolbox.config_check.check_config`) and the cause.
    """
    if not (isinstance(cfg, dict) and isinstance(cfg.get("type"), str)):
        return build_from_cfg(cfg, registry, default_args)
    component = registry.get(cfg["type"])
    args = {k: v for k, v in cfg.items() if k not in ("type", "_scope_")}
    for k, v in (default_args or {}).items():
        args.setdefault(k, v)
    where = getattr(registry, "kind", registry.name)
    stack = build_stack()
    stack.append((where, cfg["type"], args))
    try:
        try:
            check_arguments(component, args, where)
        except ConfigArgumentError as exc:
            raise ConfigArgumentError(f"{exc}{locate(list(stack))}") from None
        return build_from_cfg(cfg, registry, default_args)
    except ToolboxError:
        raise
    except (ValueError, TypeError) as exc:
        raise _constructor_error(exc, where, cfg["type"], args) from exc
    finally:
        stack.pop()


class HookPointRegistry(Registry):
    """An mmengine Registry filled lazily from the plugins of one hook point."""

    def __init__(self, hook_point: str, kind: str, parent: Registry | None = None):
        super().__init__(kind, parent=parent, scope=SCOPE, build_func=build_checked)
        self.hook_point = hook_point
        self.kind = kind
        self.providers: dict[str, Any] = {}
        #: names two plugins register, with the error a lookup raises
        self.conflicts: dict[str, str] = {}

    def add_component(self, name: str, component, provider) -> None:
        self._register_module(component, module_name=name, force=True)
        self.providers[name] = provider

    def add_conflict(self, name: str, message: str) -> None:
        """Make looking ``name`` up raise :class:`PluginConflictError`."""
        self._module_dict.pop(name, None)
        self.providers.pop(name, None)
        self.conflicts[name] = message

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._module_dict)

    def get(self, key: str):
        load_plugins()
        if isinstance(key, str) and key in self.conflicts:
            raise PluginConflictError(self.conflicts[key])
        found = super().get(key)
        if found is None and isinstance(key, str):
            names = sorted(self._module_dict)
            close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
            if not close:
                close = [n for n in names if n.lower().startswith(key.lower()[:3])][:3]
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownComponentError(
                f"unknown {self.kind} '{key}' (hook point '{self.hook_point}').{hint} "
                f"Run `{LIST_COMMAND}` to list what is installed.{self._plugin_status(key)}")
        return found

    def _plugin_status(self, key: str) -> str:
        """Plugins that failed or were left out, and whether one provides ``key``."""
        try:
            note = plugins.loaded_manager().explain_missing(self.hook_point, key)
        except Exception:  # explaining must never hide the real error
            return ""
        return f" Plugins: {note}" if note else ""

    def __contains__(self, key) -> bool:
        load_plugins()
        return key in self.conflicts or super().__contains__(key)


# The hook-point registries. Models, datasets, transforms, metrics, runner
# hooks and functions are children of mmengine's roots so that mmengine's
# Runner finds them through ``default_scope='toolbox'``; backbones, necks,
# heads and losses are built by the models themselves.
BACKBONES = HookPointRegistry("backbones", "backbone")
NECKS = HookPointRegistry("necks", "neck")
HEADS = HookPointRegistry("heads", "head")
LOSSES = HookPointRegistry("losses", "loss")
MODELS = HookPointRegistry("models", "model", parent=mme.MODELS)
DATASETS = HookPointRegistry("datasets", "dataset", parent=mme.DATASETS)
TRANSFORMS = HookPointRegistry("transforms", "transform", parent=mme.TRANSFORMS)
METRICS = HookPointRegistry("metrics", "metric", parent=mme.METRICS)
HOOKS = HookPointRegistry("hooks", "hook", parent=mme.HOOKS)
FUNCTIONS = HookPointRegistry("functions", "function", parent=mme.FUNCTIONS)

REGISTRIES: dict[str, HookPointRegistry] = {
    r.hook_point: r
    for r in (BACKBONES, NECKS, HEADS, LOSSES, MODELS, DATASETS, TRANSFORMS, METRICS,
              HOOKS, FUNCTIONS)
}

# Plain children of mmengine's other roots, so building runner parts under the
# ``toolbox`` scope finds mmengine's own hooks, optimizers, loops and so on.
RUNNERS = Registry("runner", parent=mme.RUNNERS, scope=SCOPE)
RUNNER_CONSTRUCTORS = Registry("runner constructor", parent=mme.RUNNER_CONSTRUCTORS, scope=SCOPE)
LOOPS = Registry("loop", parent=mme.LOOPS, scope=SCOPE)
LOG_PROCESSORS = Registry("log_processor", parent=mme.LOG_PROCESSORS, scope=SCOPE)
OPTIMIZERS = Registry("optimizer", parent=mme.OPTIMIZERS, scope=SCOPE)
OPTIM_WRAPPERS = Registry("optim_wrapper", parent=mme.OPTIM_WRAPPERS, scope=SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor", parent=mme.OPTIM_WRAPPER_CONSTRUCTORS, scope=SCOPE)
PARAM_SCHEDULERS = Registry("parameter scheduler", parent=mme.PARAM_SCHEDULERS, scope=SCOPE)
EVALUATOR = Registry("evaluator", parent=mme.EVALUATOR, scope=SCOPE)
DATA_SAMPLERS = Registry("data sampler", parent=mme.DATA_SAMPLERS, scope=SCOPE)
VISUALIZERS = Registry("visualizer", parent=mme.VISUALIZERS, scope=SCOPE)
VISBACKENDS = Registry("vis_backend", parent=mme.VISBACKENDS, scope=SCOPE)
MODEL_WRAPPERS = Registry("model_wrapper", parent=mme.MODEL_WRAPPERS, scope=SCOPE)
WEIGHT_INITIALIZERS = Registry("weight initializer", parent=mme.WEIGHT_INITIALIZERS, scope=SCOPE)
TASK_UTILS = Registry("task util", parent=mme.TASK_UTILS, scope=SCOPE)


_applied_lock = threading.RLock()
#: the plugin table the registries hold now (None: none yet)
_applied: dict | None = None


def load_plugins() -> None:
    """Fill the hook-point registries from the plugins' table, when the plugin
    manager has loaded a table these registries do not hold yet (the first
    lookup, or the first one after :func:`toolbox.plugins.reset`)."""
    global _applied
    table = plugins.ensure_loaded()
    with _applied_lock:
        if table is _applied:
            return
        clear_plugin_components()
        conflicts = plugins.loaded_manager().conflicts
        for point, regs in table.items():
            reg = REGISTRIES[point]
            for r in regs.values():
                reg.add_component(r.name, r.component, r.provider)
            for name, clash in conflicts.get(point, {}).items():
                reg.add_conflict(name, clash.message())
        _applied = table


def clear_plugin_components() -> None:
    """Remove what the plugins registered (the registries do it themselves
    after :func:`toolbox.plugins.reset`); components registered directly with
    ``register_module`` stay."""
    for reg in REGISTRIES.values():
        for name in reg.providers:  # what plugins added; direct register_module() stays
            reg._module_dict.pop(name, None)
        reg.providers.clear()
        reg.conflicts.clear()
