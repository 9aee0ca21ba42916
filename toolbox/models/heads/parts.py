"""Building blocks every head shares: parts built from configs, the one rule
for sub-config defaults, input shapes, and ground-truth access.

**The defaults rule** (every head, every sub-config): a sub-config given in
a config *merges over* the head's documented default, so a partial
``assigner=dict(pos_iou_thr=0.6)`` keeps every other default. Unknown keys
are refused, listing the accepted ones: for parts built from a class
(assigner, coder, anchor generator, sampler, matcher) the class's
constructor arguments, for plain dict configs (``test_cfg``) the default's
keys. A loss config whose ``type`` differs from the default's *replaces* it
(FocalLoss's ``gamma`` means nothing to EQLv2); the same type or no type
merges. ``_delete_=True`` in a sub-config (mmengine's spelling for "replace,
do not merge") replaces the default too. See docs/heads.md.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from toolbox.registry import LOSSES, check_arguments
from toolbox.structures.feature_spec import FeatureSpec, channels_of, strides_of

__all__ = ["CLASS_AGNOSTIC", "build_part", "build_loss", "merge_cfg", "with_defaults",
           "loss_with_defaults", "resolve_input_shape", "uniform_channels", "ground_truth",
           "regression_pair", "flatten_levels", "sample_metas"]

CLASS_AGNOSTIC = 2 ** 31 - 1
"""``num_classes`` for class-agnostic ground truth: any label is an object."""


def build_part(cfg, cls, where: str, **defaults):
    """Build a helper object (anchor generator, assigner, coder) from a dict
    whose optional ``type`` must name ``cls``; ``defaults`` fill absent keys."""
    if isinstance(cfg, cls):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f"{where} must be a dict config or a {cls.__name__}, got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("type", cls.__name__)
    if kind != cls.__name__:
        raise ValueError(f"{where}: type '{kind}' is not supported here, expected '{cls.__name__}'")
    for key, value in defaults.items():
        cfg.setdefault(key, value)
    check_arguments(cls, cfg, where)
    return cls(**cfg)


def with_defaults(cfg, default: dict, cls, where: str, **fill):
    """A part of class ``cls`` built from ``cfg`` merged over ``default``
    (the defaults rule); an instance of ``cls`` is used as given. ``fill``
    supplies values (e.g. the head's strides) that neither sets. Default keys
    that ``cfg`` replaces by an alternative (``cls.ALTERNATIVES``, e.g. an
    anchor generator's ``sizes`` instead of ``octave_base_scale``) are dropped."""
    if isinstance(cfg, cls):
        return cfg
    if cfg is not None and not isinstance(cfg, dict):
        raise TypeError(f"{where} must be a dict config or a {cls.__name__}, got {cfg!r}")
    cfg = dict(cfg or {})
    if cfg.pop("_delete_", False):
        return build_part(cfg, cls, where, **fill)
    replaced = {other for key in cfg for other in getattr(cls, "ALTERNATIVES", {}).get(key, ())}
    default = {k: v for k, v in default.items() if k not in replaced}
    return build_part({**default, **cfg}, cls, where, **fill)


def loss_with_defaults(cfg, default: dict) -> nn.Module:
    """A loss from ``cfg`` merged over ``default``; a ``cfg`` whose ``type``
    differs from the default's replaces it; a module is used as given."""
    if isinstance(cfg, nn.Module):
        return cfg
    if cfg is None:
        return LOSSES.build(dict(default))
    cfg = dict(cfg)
    replace = cfg.pop("_delete_", False)
    kind = cfg.get("type", default.get("type"))
    merged = {**default, **cfg} if kind == default.get("type") and not replace else cfg
    return LOSSES.build(merged)


def build_loss(cfg) -> nn.Module:
    """A ``LOSSES`` component from its config (a module is used as given)."""
    return cfg if isinstance(cfg, nn.Module) else LOSSES.build(cfg)


def merge_cfg(owner: str, base: dict, override: dict | None, what: str) -> dict:
    """``base`` updated with ``override``; keys ``base`` lacks are refused,
    naming the head (``owner``) and the config (``what``). A plain dict config
    needs every key, so ``_delete_`` (see the module docstring) is dropped."""
    override = {k: v for k, v in (override or {}).items() if k != "_delete_"}
    unknown = set(override) - set(base)
    if unknown:
        raise ValueError(f"{owner}: unknown {what} key(s) {sorted(unknown)}; "
                         f"accepted: {sorted(base)}")
    return {**base, **(override or {})}


def resolve_input_shape(owner: str, input_shape: Sequence[FeatureSpec] | None,
                        in_channels, strides) -> tuple:
    """``(in_channels, strides)`` of a head: the given ones, filled from
    ``input_shape`` (the feature producer's ``output_shape()``) where absent.
    Both given and disagreeing raises ``ValueError`` naming ``owner``."""
    if input_shape is None:
        if in_channels is None:
            raise ValueError(f"{owner}: give 'in_channels' or 'input_shape'")
        return in_channels, strides
    specs = tuple(input_shape)
    if not specs or not all(isinstance(s, FeatureSpec) for s in specs):
        raise TypeError(f"{owner}: 'input_shape' must be a non-empty sequence of FeatureSpec, "
                        f"got {input_shape!r}")
    shape_channels, shape_strides = channels_of(specs), strides_of(specs)
    if in_channels is None:
        in_channels = shape_channels
    elif _as_levels(in_channels, len(specs)) != shape_channels:
        raise ValueError(f"{owner}: 'in_channels' {in_channels} disagrees with 'input_shape' "
                         f"channels {shape_channels}")
    if strides is None:
        strides = shape_strides
    elif tuple(int(s) for s in strides) != shape_strides:
        raise ValueError(f"{owner}: 'strides' {tuple(strides)} disagree with 'input_shape' "
                         f"strides {shape_strides}")
    return in_channels, strides


def _as_levels(channels, num: int) -> tuple[int, ...]:
    return (int(channels),) * num if isinstance(channels, int) else tuple(int(c) for c in channels)


def uniform_channels(in_channels, owner: str) -> int:
    """One width for a head whose layers every level shares: an int, or a
    sequence of equal ints."""
    if isinstance(in_channels, int):
        return in_channels
    widths = set(in_channels)
    if len(widths) != 1:
        raise ValueError(f"{owner}: 'in_channels' must be one int (its layers are shared by all "
                         f"levels), got different widths {tuple(in_channels)}; put a neck such "
                         "as FPN in front of the head")
    return widths.pop()


def ground_truth(sample, device, num_classes: int, owner: str
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(boxes [N, 4], labels [N], ignored boxes [M, 4] or None)`` of a
    ``DetDataSample``, checked: labels must be 0-based indices below
    ``num_classes`` (``CLASS_AGNOSTIC``: any; ``owner`` names the head)."""
    gt = sample.gt_instances
    boxes = torch.as_tensor(gt.bboxes, dtype=torch.float32, device=device).reshape(-1, 4)
    labels = torch.as_tensor(gt.labels, dtype=torch.long, device=device).reshape(-1)
    if labels.numel() != boxes.shape[0]:
        raise ValueError(f"{owner}: gt_instances has {boxes.shape[0]} bboxes but "
                         f"{labels.numel()} labels")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{owner}: gt_instances.labels must be 0-based class indices in "
                         f"[0, {num_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    ignored = sample.get("ignored_instances", None)
    ignored_boxes = None
    if ignored is not None and "bboxes" in ignored and len(ignored) > 0:
        ignored_boxes = torch.as_tensor(ignored.bboxes, dtype=torch.float32,
                                        device=device).reshape(-1, 4)
    return boxes, labels, ignored_boxes


def regression_pair(bbox_coder, decoded: bool, priors: Tensor, deltas: Tensor,
                    matched: Tensor) -> tuple[Tensor, Tensor]:
    """(prediction, target) for a box loss: decoded boxes vs the gt boxes when
    the loss ``expects_boxes`` (``decoded``), else deltas vs encoded gt boxes."""
    if decoded:
        return bbox_coder.decode(priors, deltas), matched
    return deltas, bbox_coder.encode(priors, matched)


def flatten_levels(maps: Sequence[Tensor], channels: int) -> Tensor:
    """[B, A * K, H, W] per level -> [B, sum(H * W * A), K], in anchor order
    (level, row, column, anchor)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels) for m in maps],
                     dim=1)


def sample_metas(data_samples, batch: int) -> list[dict]:
    """The samples' metainfo dicts, or ``batch`` empty ones without samples."""
    return ([s.metainfo for s in data_samples] if data_samples is not None
            else [{} for _ in range(batch)])
