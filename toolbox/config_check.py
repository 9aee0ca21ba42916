"""Whole-config validation: every mistake reported before anything is built.

:func:`check_config` walks the whole config, not only its top level:

* the model tree: the model, ``backbone``, ``neck`` (one or a list),
  every ``*head``, every ``loss_*``, ``data_preprocessor``, and the heads'
  parts (``assigner``, ``sampler``, ``*coder``, ``anchor_generator``,
  ``matcher``), each against its registry and its constructor's signature;
* the pipelines' transforms of every dataloader (through dataset wrappers);
* the datasets (through wrappers) and the val/test metrics;
* ``custom_hooks`` / ``default_hooks``, ``optim_wrapper`` (and its
  ``optimizer``) and ``param_scheduler``;

then constructs the model once on PyTorch's ``meta`` device (no memory, no
weights) and every transform, so a constructor's ``ValueError`` /
``TypeError`` (``kernel_size=6``) is reported as well, naming the
component, the config key path (``model.neck.kernel_size``) and the file.

Every problem found by the walk is reported in one :class:`ConfigError`-family
exception (a :class:`toolbox.errors.ToolboxError`), one line per problem.
The same naming is used when a component fails later, at the real build
(:func:`describe_build_error`, called by the registries).
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import sys
import warnings
from typing import Any

from toolbox.build_errors import (Node, argument_named, config_context,  # noqa: F401
                                  describe_build_error, file_note, locate, set_config_tree)
from toolbox.config_arguments import missing_arguments, unknown_arguments
from toolbox.errors import (ConfigArgumentError, ConfigValueError, ToolboxError,
                            UnknownComponentError)

__all__ = ["ConfigValueError", "check_config", "describe_build_error", "walk_model"]


#: suffix of a part key -> suffix of the class name the head builds it with
_PART_KEYS = (("assigner", "Assigner"), ("sampler", "Sampler"), ("coder", "Coder"),
              ("anchor_generator", "AnchorGenerator"), ("prior_generator", "AnchorGenerator"),
              ("matcher", "Matcher"))
#: keys of a dataloader's dataset that hold nested datasets (wrappers)
_DATASET_WRAPPER_KEYS = ("dataset", "datasets")


def _lookup(registry, name: str, path: str, kind: str) -> tuple[Any, list[str]]:
    try:
        found = registry.get(name)
    except UnknownComponentError as exc:
        return None, [f"config key '{path}.type': {exc}"]
    except ToolboxError as exc:  # a clash between two plugins
        return None, [f"config key '{path}.type': {exc}"]
    if found is None:
        return None, [f"config key '{path}.type': unknown {kind} '{name}'. Run "
                      "`toolbox plugins` to list what is installed."]
    return found, []


# ---------------------------------------------------------------- the model
def _registry_for(key: str):
    from toolbox import registry as R
    if key == "backbone":
        return R.BACKBONES
    if key == "neck" or key.endswith("_neck"):
        return R.NECKS
    if key == "head" or key.endswith("head"):
        return R.HEADS
    if key.startswith("loss"):
        return R.LOSSES
    if key == "data_preprocessor":
        return R.MODELS
    return None


def _part_class(owner, key: str, cfg: dict):
    """The class a head builds its ``key`` part with (``assigner`` ->
    ``MaxIoUAssigner``): the one class of the right kind the owner's module
    uses, or the ``type`` the config names among :mod:`toolbox.structures`."""
    suffix = next((s for k, s in _PART_KEYS if key.endswith(k)), None)
    if suffix is None:
        return None, None
    for klass in (owner.__mro__ if inspect.isclass(owner) else (owner,)):  # a plugin's
        module = sys.modules.get(getattr(klass, "__module__", ""), None)  # subclass too
        found = {v for v in vars(module).values()
                 if inspect.isclass(v) and v.__name__.endswith(suffix)} if module else set()
        if len(found) == 1:
            return found.pop(), suffix
        if found:
            break
    if isinstance(cfg.get("type"), str):
        import toolbox.structures as S
        cls = getattr(S, cfg["type"], None)
        if inspect.isclass(cls):
            return cls, suffix
    return None, suffix


def _over_default(owner, key: str, item: dict) -> dict:
    """A typeless sub-config merged over the owner's documented default for
    ``key`` (``DEFAULT_<KEY>`` in the module of the owner or a base class),
    as the heads' defaults rule builds it; ``item`` unchanged without one."""
    name = f"DEFAULT_{key.upper()}"
    for klass in (owner.__mro__ if inspect.isclass(owner) else (owner,)):
        module = sys.modules.get(getattr(klass, "__module__", ""), None)
        default = getattr(module, name, None) if module else None
        if isinstance(default, dict) and isinstance(default.get("type"), str):
            if item.get("_delete_"):
                return item
            return {**default, **{k: v for k, v in item.items() if k != "_delete_"}}
    return item


def walk_model(cfg: dict, path: str = "model") -> tuple[Node | None, list[str]]:
    """Check a model config tree statically; returns its root :class:`Node`
    and the problems found (sentences naming the config key path)."""
    from toolbox.registry import MODELS
    problems: list[str] = []
    if not isinstance(cfg, dict) or not isinstance(cfg.get("type"), str):
        return None, problems
    root = _walk_component(cfg, MODELS, path, problems, top=True)
    return root, problems


def _walk_component(cfg: dict, registry, path: str, problems: list, top=False) -> Node | None:
    kind = registry.kind if hasattr(registry, "kind") else registry.name
    component, found = _lookup(registry, cfg["type"], path, kind)
    problems += found
    if component is None:
        return None
    args = {k: v for k, v in cfg.items() if k not in ("type", "_scope_")}
    problems += unknown_arguments(component, args, path, kind, cfg["type"])
    node = Node(path, kind, cfg["type"], args)
    for key, value in args.items():
        sub = f"{path}.{key}"
        items = ([(f"{sub}[{i}]", v) for i, v in enumerate(value)]
                 if isinstance(value, (list, tuple)) else [(sub, value)])
        for where, item in items:
            if not isinstance(item, dict):
                continue
            reg = _registry_for(key)
            if reg is not None and not isinstance(item.get("type"), str):
                item = _over_default(component, key, item)  # a partial sub-config
            if reg is not None and isinstance(item.get("type"), str):
                child = _walk_component(item, reg, where, problems)
                if child is not None:
                    node.children.append(child)
                continue
            cls, suffix = _part_class(component, key, item)
            if suffix is None:
                continue
            if cls is None:
                if isinstance(item.get("type"), str):
                    problems.append(f"config key '{where}.type': unknown {key} "
                                    f"'{item['type']}' for {kind} '{cfg['type']}'.")
                continue
            if isinstance(item.get("type"), str) and item["type"] != cls.__name__:
                problems.append(f"config key '{where}.type': {kind} '{cfg['type']}' builds "
                                f"its {key} as '{cls.__name__}', not '{item['type']}'; "
                                f"remove the type or set it to '{cls.__name__}'.")
                continue
            problems += unknown_arguments(cls, item, where, key, cls.__name__)
    return node


# ------------------------------------------------------- data, hooks, optim
def _dataset_configs(cfg: dict, path: str):
    """The dataset configs of a dataloader, through wrappers."""
    if not isinstance(cfg, dict):
        return
    yield path, cfg
    for key in _DATASET_WRAPPER_KEYS:
        value = cfg.get(key)
        if isinstance(value, dict):
            yield from _dataset_configs(value, f"{path}.{key}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from _dataset_configs(v, f"{path}.{key}[{i}]")


def _check_pipelines(cfg, problems: list, trials: list) -> None:
    from toolbox.registry import DATASETS, TRANSFORMS
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if not isinstance(loader, dict):
            continue
        for dpath, dataset in _dataset_configs(loader.get("dataset"), f"{split}_dataloader.dataset"):
            _check_registry_list(dataset, DATASETS, dpath, "dataset", problems, required=False)
            pipeline = dataset.get("pipeline")
            if not isinstance(pipeline, (list, tuple)):
                continue
            for i, step in enumerate(pipeline):
                where = f"{dpath}.pipeline[{i}]"
                if not isinstance(step, dict) or not isinstance(step.get("type"), str):
                    continue
                component, found = _lookup(TRANSFORMS, step["type"], where, "transform")
                problems += found
                if component is None:
                    continue
                args = {k: v for k, v in step.items() if k not in ("type", "_scope_")}
                before = len(problems)
                problems += unknown_arguments(component, args, where, "transform", step["type"])
                problems += missing_arguments(component, args, where, "transform", step["type"])
                if len(problems) == before:
                    trials.append((where, "transform", step["type"], component, args))


def _check_registry_list(entries, registry, path: str, kind: str, problems: list,
                         ignore: tuple = (), required: bool = True) -> None:
    items = (list(entries.items()) if isinstance(entries, dict) and "type" not in entries
             else [(None, entries)] if isinstance(entries, dict)
             else list(enumerate(entries or [])) if isinstance(entries, (list, tuple)) else [])
    for key, item in items:
        where = path if key is None else (f"{path}.{key}" if isinstance(key, str)
                                          else f"{path}[{key}]")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            continue
        try:
            component = registry.get(item["type"])
        except ToolboxError as exc:  # a hook-point registry explains unknown names itself
            problems.append(f"config key '{where}.type': {exc}")
            continue
        if component is None:
            close = difflib.get_close_matches(item["type"], _all_names(registry), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            problems.append(f"config key '{where}.type': unknown {kind} '{item['type']}'.{hint}")
            continue
        args = {k: v for k, v in item.items() if k not in ("type", "_scope_")}
        problems += unknown_arguments(component, args, where, kind, item["type"], ignore)
        if required:
            problems += missing_arguments(component, args, where, kind, item["type"], ignore)


def _all_names(registry) -> list[str]:
    names, reg = set(), registry
    while reg is not None:
        names |= set(reg._module_dict)
        for child in getattr(reg, "_children", {}).values():
            names |= set(child._module_dict)
        reg = reg.parent
    return sorted(names)


def _check_runtime(cfg, problems: list) -> None:
    from toolbox import registry as R
    _check_registry_list(cfg.get("custom_hooks"), R.HOOKS, "custom_hooks", "hook", problems)
    _check_registry_list(cfg.get("default_hooks"), R.HOOKS, "default_hooks", "hook", problems)
    wrapper = cfg.get("optim_wrapper")
    if isinstance(wrapper, dict):
        if isinstance(wrapper.get("type"), str):
            _check_registry_list(wrapper, R.OPTIM_WRAPPERS, "optim_wrapper", "optimizer wrapper",
                                 problems, ignore=("optimizer", "paramwise_cfg", "constructor"))
        if isinstance(wrapper.get("optimizer"), dict):
            _check_registry_list(wrapper["optimizer"], R.OPTIMIZERS, "optim_wrapper.optimizer",
                                 "optimizer", problems, ignore=("params",))
    _check_registry_list(cfg.get("param_scheduler"), R.PARAM_SCHEDULERS, "param_scheduler",
                         "parameter scheduler", problems,
                         ignore=("optimizer", "convert_to_iter_based"))
    for split in ("val", "test"):
        evaluator = cfg.get(f"{split}_evaluator")
        if isinstance(evaluator, dict) and "metrics" in evaluator:  # dict(type=Evaluator, ...)
            evaluator = evaluator["metrics"]
        _check_registry_list(evaluator, R.METRICS, f"{split}_evaluator", "metric", problems,
                             required=False)


def _trial_build_model(model_cfg) -> None:
    """Build the model on the meta device (constructors run, no memory is
    used); a constructor's ValueError/TypeError is confirmed by a real build
    before it is reported, since a meta tensor can fail where a real one
    would not. Other failures are left to the real build."""
    import torch
    from mmengine.registry import DefaultScope

    from toolbox.registry import MODELS
    scope = (DefaultScope.overwrite_default_scope("toolbox")
             if DefaultScope.get_current_instance() is None else contextlib.nullcontext())
    with scope:
        failed = False
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                MODELS.build(model_cfg)
        except (ConfigValueError, ConfigArgumentError, UnknownComponentError):
            failed = True
        except ToolboxError:
            raise
        except Exception:
            return
        if failed:  # outside the handler: one traceback, not two chained ones
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                MODELS.build(model_cfg)  # raises the real error, or it was a meta artefact


def _trial_build_transforms(trials: list, filename: str | None) -> None:
    for where, kind, name, component, args in trials:
        try:
            component(**args)
        except ToolboxError:
            raise
        except (ValueError, TypeError) as exc:
            key = argument_named(exc, args)
            at = f"{where}.{key}" if key else where
            cls = ConfigArgumentError if isinstance(exc, TypeError) else ConfigValueError
            raise cls(f"{kind} '{name}' at config key '{at}'{file_note(filename)} rejected "
                      f"its arguments: {exc}. Fix {at} in the config.") from exc
        except Exception:
            continue


def _raise(problems: list[str], filename: str | None):
    first = problems[0]
    cls = UnknownComponentError if "unknown" in first and ".type'" in first else ConfigArgumentError
    head = (f"{len(problems)} problems in the config{file_note(filename)}:\n  "
            if len(problems) > 1 else "")
    body = "\n  ".join(problems)
    tail = "" if head or not filename else file_note(filename)
    raise cls(f"{head}{body}{tail}")


def check_config(cfg, *, build: bool = True) -> None:
    """Validate the whole config before the runner builds anything.

    Raises a :class:`toolbox.errors.ToolboxError` (``UnknownComponentError``,
    ``ConfigArgumentError`` or :class:`ConfigValueError`) whose message names
    each problem's config key path, the component, the config file and the fix.
    With ``build`` (the default) the model is also constructed on the meta
    device and each transform once, to catch rejected values. Afterwards the
    config stays the one later build errors are described against.
    """
    filename = getattr(cfg, "filename", None)
    problems: list[str] = []
    root, found = walk_model(cfg.get("model"))
    problems += found
    trials: list = []
    _check_pipelines(cfg, problems, trials)
    _check_runtime(cfg, problems)
    if problems:
        _raise(problems, filename)
    set_config_tree(filename, [root] if root else [])
    if build:
        if root is not None:
            _trial_build_model(cfg.get("model"))
        _trial_build_transforms(trials, filename)
    _report_overrides()


def _report_overrides() -> None:
    """Show the components an ``override()`` replaced (at startup, where
    ``tools/train.py`` shows it: a warning on the ``toolbox.plugins`` logger)."""
    from toolbox.plugins import logger, overrides_in_effect
    for line in overrides_in_effect():
        logger.warning("plugin override in effect: %s", line)

