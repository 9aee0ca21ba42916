"""Building a model's parts from configs, each fed what the part before it declares.

The contract detectors and segmentors follow (no guessing from signatures):

* the backbone is built from its config as it is;
* every neck is built with ``input_shape=<previous part>.output_shape()``
  (a tuple of :class:`~toolbox.structures.FeatureSpec`);
* every head with ``input_shape=<last neck or backbone>.output_shape()``
  (DETR: the last map only; segmentation heads also get ``spatial_dims``);
* a config that sets ``in_channels`` itself gets no ``input_shape``;
* a configured ``strides`` / ``in_strides`` that disagrees with the
  declared strides is refused, naming both;
* the model pads its inputs to the largest ``size_divisor`` of its parts.

Deprecated for one release: a plugin neck or head whose constructor takes
no ``input_shape`` (and no ``**kwargs``, or requires ``in_channels`` /
``in_strides`` / ``strides`` anyway) gets them filled the old way, with a
DeprecationWarning (:func:`_legacy_parameters`, the only place a signature
is inspected).
"""
from __future__ import annotations

import inspect
import warnings
from typing import Callable

from torch import nn

from toolbox.registry import BACKBONES, MODELS, NECKS
from toolbox.structures.feature_spec import FeatureSpec, channels_of, specs_from, strides_of

__all__ = ["NeckChain", "build_component", "build_plain", "build_preprocessor", "build_trunk",
           "follow_size_divisor", "head_fill", "neck_fill", "output_shape_of",
           "size_divisor_of", "trunk_size_divisor"]

Specs = tuple[FeatureSpec, ...]
_SHAPE_ARGUMENTS = {"in_channels", "in_strides", "strides"}


# ------------------------------------------------------------ what parts declare
def output_shape_of(part: nn.Module) -> Specs | None:
    """``part.output_shape()``, or None when it declares nothing."""
    declare = getattr(part, "output_shape", None)
    if callable(declare):
        return tuple(declare()) or None
    return _legacy_output_shape(part)


def size_divisor_of(part: nn.Module | None) -> int:
    """The multiple ``part`` needs its input sides padded to (1: none)."""
    return int(getattr(part, "size_divisor", 1) or 1) if part is not None else 1


def neck_fill(specs: Specs | None) -> dict:
    """The arguments an old-style neck was given: ``in_channels``, ``in_strides``."""
    return {"in_channels": channels_of(specs) if specs else None,
            "in_strides": strides_of(specs) if specs else None}


def head_fill(specs: Specs | None, one_width: bool = True) -> dict:
    """The arguments an old-style head was given: ``in_channels`` (one int
    when every level has the same width and ``one_width``) and ``strides``."""
    channels = channels_of(specs) if specs else None
    if one_width and channels is not None and len(set(channels)) == 1:
        channels = channels[0]
    return {"in_channels": channels, "strides": strides_of(specs) if specs else None}


# ---------------------------------------------------------------------- building
def build_component(cfg, registry, where: str, owner: str, input_shape: Specs | None = None,
                    source: str = "backbone", legacy_fill: Callable[[Specs | None], dict] =
                    head_fill, extra: dict | None = None) -> nn.Module:
    """Build ``cfg`` from ``registry`` with ``input_shape`` (what ``source``
    declares) and ``extra`` arguments, unless the config sets ``in_channels``;
    a built module is returned as is. Errors name the ``owner`` model and the
    config key ``where``."""
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = _config_dict(cfg, where, owner)
    component = registry.get(cfg["type"])
    _check_strides(cfg, where, input_shape, source, owner)
    legacy = _legacy_parameters(component)
    if legacy is not None:
        _fill_legacy(cfg, legacy, {**legacy_fill(input_shape), **(extra or {})}, where,
                     source, owner, component)
        return registry.build(cfg)
    if "in_channels" not in cfg:
        if input_shape is None:
            raise ValueError(f"{owner}: cannot infer {where}.input_shape: the {source} "
                             f"declares no output_shape(); set 'in_channels' in the "
                             f"{where} config")
        cfg.setdefault("input_shape", tuple(input_shape))
    for key, value in (extra or {}).items():
        cfg.setdefault(key, value)
    return registry.build(cfg)


def build_plain(cfg, registry, where: str, owner: str) -> nn.Module:
    """Build ``cfg`` from ``registry`` as it is (a built module as is)."""
    return cfg if isinstance(cfg, nn.Module) else registry.build(_config_dict(cfg, where, owner))


def _config_dict(cfg, where: str, owner: str) -> dict:
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise TypeError(f"{owner}: '{where}' must be a config dict with a 'type' "
                        f"key (or a built module), got {cfg!r}")
    return dict(cfg)


def _check_strides(cfg: dict, where: str, specs: Specs | None, source: str, owner: str) -> None:
    """Refuse a configured ``strides`` / ``in_strides`` that disagrees with
    the strides ``source`` declares."""
    if not specs:
        return
    declared = strides_of(specs)
    for key in ("strides", "in_strides"):
        if cfg.get(key) is not None and tuple(cfg[key]) != declared:
            given = tuple(cfg[key])
            raise ValueError(f"{owner}: {where} {key} {given} ({len(given)} "
                             f"levels) disagree with the {source}'s out_strides {declared} "
                             f"({len(declared)} levels); drop '{key}' from the {where} config "
                             f"to inherit them")


class NeckChain(nn.Sequential):
    """Necks applied in order (``neck=[dict(type='FPN'), dict(type='ASFF')]``);
    declares the last neck's outputs."""

    def output_shape(self) -> Specs:
        return output_shape_of(self[-1]) or ()

    @property
    def size_divisor(self) -> int:
        return max(size_divisor_of(m) for m in self)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Deprecated: ``channels_of(self.output_shape())``."""
        return channels_of(self.output_shape())

    @property
    def out_strides(self) -> tuple[int, ...]:
        """Deprecated: ``strides_of(self.output_shape())``."""
        return strides_of(self.output_shape())


def build_trunk(model: nn.Module, backbone, neck) -> tuple[nn.Module, str]:
    """Set ``model.backbone`` and ``model.neck`` (None, one neck or a
    :class:`NeckChain`), each neck built with ``input_shape`` = the previous
    part's ``output_shape()``. Returns the part whose outputs the heads see,
    and its name (``'backbone'`` or ``'neck'``)."""
    owner = type(model).__name__
    model.backbone = build_plain(backbone, BACKBONES, "backbone", owner)
    source, name = model.backbone, "backbone"
    model.neck = None
    if neck is not None:
        chain = []
        for cfg in (neck if isinstance(neck, (list, tuple)) else [neck]):
            chain.append(build_component(cfg, NECKS, "neck", owner, output_shape_of(source),
                                         name, legacy_fill=neck_fill))
            source, name = chain[-1], "neck"
        model.neck = chain[0] if len(chain) == 1 else NeckChain(*chain)
    return source, name


def trunk_size_divisor(model: nn.Module) -> int:
    """The multiple ``model``'s inputs are padded to: the largest its
    backbone and neck need."""
    return max(size_divisor_of(model.backbone), size_divisor_of(model.neck))


# --------------------------------------------------------- the data preprocessor
def build_preprocessor(cfg, default_type: str) -> nn.Module:
    """The model's data preprocessor: ``cfg`` built from ``MODELS`` (a built
    module as is); None gives ``default_type`` without normalisation (it
    moves, casts and pads: inputs the pipeline normalised)."""
    if isinstance(cfg, nn.Module):
        return cfg
    if cfg is None:
        cfg = dict(type=default_type)
    return MODELS.build(dict(cfg))


def follow_size_divisor(model: nn.Module) -> None:
    """Make ``model``'s preprocessor pad to (at least) ``model.size_divisor``,
    read when a batch comes (the parts are built after ``__init__`` starts)."""
    follow = getattr(model.data_preprocessor, "follow_size_divisor", None)
    if follow is not None:
        follow(model._preprocessor_size_divisor)


# ------------------------------------- deprecated paths: remove after one release
def _legacy_parameters(component) -> set[str] | None:
    """DEPRECATED PATH (remove after one release). The constructor argument
    names of a component written before ``input_shape`` (``'**'`` among them
    when it takes ``**kwargs``): one that names no ``input_shape`` and takes
    no ``**kwargs``, or requires ``in_channels`` / ``in_strides`` / ``strides``
    (e.g. an FPN subclass passing ``**kwargs`` on). None for one that follows
    the contract."""
    target = component.__init__ if inspect.isclass(component) else component
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if "input_shape" in params:
        return None
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    required = {name for name, p in params.items() if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if takes_kwargs and not required & _SHAPE_ARGUMENTS:
        return None
    return set(params) | ({"**"} if takes_kwargs else set())


def _fill_legacy(cfg: dict, accepted: set[str], fill: dict, where: str, source: str,
                 owner: str, component) -> None:
    """DEPRECATED PATH (remove after one release): fill the ``fill``
    arguments ``accepted`` takes and ``cfg`` leaves out, with a warning."""
    keys = [k for k in fill if (k in accepted or "**" in accepted) and k not in cfg]
    if not keys:
        return
    name = getattr(component, "__name__", repr(component))
    warnings.warn(f"{owner}: {where} {name} takes no 'input_shape'; filling {keys} from the "
                  f"{source} is deprecated and will be removed: accept "
                  f"'input_shape: Sequence[FeatureSpec] | None' (toolbox.structures)",
                  DeprecationWarning, stacklevel=4)
    for key in keys:
        if fill[key] is None:
            raise ValueError(f"{owner}: cannot infer {where}.{key}: the {source} "
                             f"declares no value for it; set '{key}' in the {where} config")
        cfg[key] = fill[key]


def _legacy_output_shape(part: nn.Module) -> Specs | None:
    """DEPRECATED PATH (remove after one release): the outputs of a module
    without ``output_shape()`` that declares parallel ``out_channels`` /
    ``out_strides`` tuples."""
    channels, strides = getattr(part, "out_channels", None), getattr(part, "out_strides", None)
    if not channels or not strides:
        return None
    warnings.warn(f"{type(part).__name__} declares out_channels / out_strides but no "
                  f"output_shape(); subclass toolbox.models.backbones.base.Backbone (or "
                  f"necks.base.Neck) or define output_shape() -> tuple[FeatureSpec, ...]",
                  DeprecationWarning, stacklevel=3)
    return specs_from(channels, strides)
