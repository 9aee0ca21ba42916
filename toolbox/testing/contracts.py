"""Contract checkers: does a component do what its hook point promises?

Each takes a config dict (built through the registry, exactly as a user's
config would be) or a built module, runs it on tiny inputs, and raises
:class:`ContractError` naming what is wrong. They return what they built
or computed, for further checks of your own.

* :func:`check_backbone` / :func:`check_neck`: the declared
  ``output_shape()`` (a ``FeatureSpec`` per map) equals what ``forward``
  returns, for several input sizes; necks and heads are built as detectors
  build them, with ``input_shape`` (:mod:`toolbox.models.builder`);
* :func:`check_loss`: a scalar with gradients; ``weight`` and ``avg_factor``
  are honoured; empty targets give a finite loss;
* :func:`check_head`: ``loss`` and ``predict`` run on images without objects
  and with objects; predicted boxes lie inside the image;
* :func:`check_seg_head`: ``loss`` and ``predict`` (logits) of a
  segmentation head;
* :func:`check_transform`: a pipeline step keeps boxes inside the image and
  labels aligned with boxes.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from toolbox.errors import ToolboxError
from toolbox.models.builder import (build_component, build_plain, head_fill, neck_fill,
                                    output_shape_of, size_divisor_of)
from toolbox.structures.feature_spec import FeatureSpec, channels_of, specs_from, strides_of
from toolbox.testing.data import det_batch, det_sample, feature_maps, seg_batch

__all__ = ["ContractError", "check_backbone", "check_neck", "check_loss", "check_head",
           "check_seg_head", "check_transform"]


class ContractError(ToolboxError, AssertionError):
    """A component does not meet its hook point's contract."""


def _build(cfg, registry, where: str, input_shape=None, legacy_fill=None, extra=None):
    """Build ``cfg`` from ``registry`` (a built module as is) by the
    detectors' contract (:mod:`toolbox.models.builder`): with
    ``input_shape`` and ``extra`` unless the config sets ``in_channels``."""
    if input_shape is None:
        return build_plain(cfg, registry, where, "check")
    return build_component(cfg, registry, where, "check", input_shape, "checker",
                           legacy_fill=legacy_fill or head_fill, extra=extra)


def _input_shape(in_channels, strides) -> tuple[FeatureSpec, ...]:
    strides = tuple(strides)
    channels = ((in_channels,) * len(strides) if isinstance(in_channels, int)
                else tuple(in_channels))
    return specs_from(channels, strides)


def _declared(owner: str, module) -> tuple[tuple[int, ...], tuple[int, ...]]:
    specs = output_shape_of(module)
    if not specs:
        raise ContractError(f"{owner}: declare the outputs (output_shape(): one FeatureSpec "
                            f"per returned map; Backbone / Neck: self.declare_outputs(...))")
    return channels_of(specs), strides_of(specs)


def _name(module) -> str:
    return type(module).__name__


def _check_maps(owner: str, outs, channels, strides, size) -> None:
    if not isinstance(outs, (tuple, list)) or not all(isinstance(o, Tensor) for o in outs):
        raise ContractError(f"{owner}: forward must return a tuple of Tensors, "
                            f"got {type(outs).__name__}")
    if not isinstance(outs, tuple):
        raise ContractError(f"{owner}: forward must return a tuple, got a list")
    if len(outs) != len(channels) or len(outs) != len(strides):
        raise ContractError(f"{owner}: returns {len(outs)} maps but output_shape() declares "
                            f"{len(channels)} (channels {tuple(channels)}, strides "
                            f"{tuple(strides)})")
    h, w = size
    for i, (out, c, s) in enumerate(zip(outs, channels, strides)):
        want = (c, math.ceil(h / s), math.ceil(w / s))
        if tuple(out.shape[1:]) != want:
            raise ContractError(
                f"{owner}: output {i} for a {h}x{w} input is {tuple(out.shape[1:])} "
                f"(C, H, W) but output_shape()[{i}] = FeatureSpec(channels={c}, stride={s}) "
                f"declares {want}")


def _sizes(module, sizes) -> list[tuple[int, int]]:
    if sizes is not None:
        return [tuple(s) for s in sizes]
    d = max(size_divisor_of(module), max(strides_of(output_shape_of(module) or ()) or (1,)))
    return [(2 * d, 2 * d), (2 * d, 3 * d)]


def check_backbone(cfg, sizes: Sequence[tuple[int, int]] | None = None, batch: int = 2):
    """Build a backbone and check ``forward(images)`` against its declared
    ``output_shape()`` for each input size (default: two sizes, square and
    not, that are multiples of ``size_divisor``). Returns the backbone."""
    from toolbox.registry import BACKBONES
    backbone = _build(cfg, BACKBONES, "backbone")
    owner = f"backbone {_name(backbone)}"
    channels, strides = _declared(owner, backbone)
    backbone.eval()
    for size in _sizes(backbone, sizes):
        with torch.no_grad():
            outs = backbone(torch.randn(batch, 3, *size))
        _check_maps(owner, outs, channels, strides, size)
    return backbone


def check_neck(cfg, in_channels: Sequence[int], in_strides: Sequence[int],
               sizes: Sequence[tuple[int, int]] | None = None, batch: int = 2):
    """Build a neck with ``input_shape`` = ``in_channels`` / ``in_strides``
    (as a detector does from its backbone's ``output_shape()``) and check its
    outputs against its declared ``output_shape()`` for each input size."""
    from toolbox.registry import NECKS
    neck = _build(cfg, NECKS, "neck", _input_shape(in_channels, in_strides), neck_fill)
    owner = f"neck {_name(neck)}"
    channels, strides = _declared(owner, neck)
    neck.eval()
    top = max(max(strides), max(in_strides))
    for size in (sizes or [(2 * top, 2 * top), (2 * top, 3 * top)]):
        feats = tuple(feature_maps(in_channels, in_strides, tuple(size), batch))
        with torch.no_grad():
            outs = neck(feats)
        _check_maps(owner, outs, channels, strides, tuple(size))
    return neck


def _finite_scalar(owner: str, value, what: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise ContractError(f"{owner}: {what} must be a Tensor, got {type(value).__name__}")
    if value.dim() != 0:
        raise ContractError(f"{owner}: {what} must be a scalar, got shape {tuple(value.shape)}")
    if not torch.isfinite(value):
        raise ContractError(f"{owner}: {what} is not finite ({value.item()})")
    return value


def check_loss(cfg, kind: str = "classification", num_classes: int = 4, n: int = 6,
               seed: int = 0) -> dict:
    """Check a loss's contract ``forward(pred, target, weight=None,
    avg_factor=None)`` with the default ``reduction='mean'``.

    ``kind='classification'``: ``pred`` logits ``[N, C]``, ``target`` long
    class indices ``[N]`` where ``C`` means background (as dense heads pass
    them). ``kind='regression'``: ``pred`` and ``target`` boxes ``[N, 4]``
    (x1 y1 x2 y2). Checks: a finite scalar with gradients; all-ones
    ``weight`` equals no weight and all-zero ``weight`` gives 0; the loss
    scales as ``1 / avg_factor``; all-background targets (an image without
    objects) and empty ``pred`` / ``target`` (with ``avg_factor=1``, as heads
    call it when nothing matched) give a finite loss whose backward works.
    Returns the computed values."""
    from toolbox.registry import LOSSES
    loss = _build(cfg, LOSSES, "loss")
    owner = f"loss {_name(loss)}"
    g = torch.Generator().manual_seed(seed)
    if kind == "classification":
        pred = torch.randn(n, num_classes, generator=g)
        target = torch.randint(0, num_classes + 1, (n,), generator=g)
        empty = (torch.zeros(0, num_classes), torch.zeros(0, dtype=torch.long))
    elif kind == "regression":
        xy = torch.rand(n, 2, generator=g) * 32
        target = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 16], 1)
        pred = target + torch.randn(n, 4, generator=g)
        empty = (torch.zeros(0, 4), torch.zeros(0, 4))
    else:
        raise ValueError(f"check_loss: kind must be 'classification' or 'regression', got {kind!r}")
    pred = pred.requires_grad_()
    value = _finite_scalar(owner, loss(pred, target), "loss(pred, target)")
    if not value.requires_grad:
        raise ContractError(f"{owner}: the loss has no gradient with respect to pred")
    value.backward()
    if pred.grad is None or not torch.isfinite(pred.grad).all():
        raise ContractError(f"{owner}: backward gives no or non-finite gradients")
    with torch.no_grad():
        ones = loss(pred, target, weight=torch.ones(n))
        zeros = loss(pred, target, weight=torch.zeros(n))
        if not torch.allclose(ones, value, rtol=1e-5, atol=1e-6):
            raise ContractError(f"{owner}: weight=ones gives {ones.item():.6g}, not the "
                                f"unweighted {value.item():.6g}")
        if abs(zeros.item()) > 1e-6:
            raise ContractError(f"{owner}: weight=zeros gives {zeros.item():.6g}, not 0")
        a2 = loss(pred, target, avg_factor=2.0)
        a8 = loss(pred, target, avg_factor=8.0)
        if not math.isclose(a2.item() * 2.0, a8.item() * 8.0, rel_tol=1e-4, abs_tol=1e-6):
            raise ContractError(f"{owner}: the loss does not scale as 1 / avg_factor "
                                f"(avg_factor=2: {a2.item():.6g}, avg_factor=8: "
                                f"{a8.item():.6g}); divide the summed loss by avg_factor")
        if kind == "classification":  # an image without objects: every target background
            _finite_scalar(owner, loss(pred, torch.full((n,), num_classes), avg_factor=1.0),
                           "the loss of all-background targets")
    epred = empty[0].requires_grad_()
    evalue = _finite_scalar(owner, loss(epred, empty[1], avg_factor=1.0),
                            "the loss of empty pred/target (avg_factor=1, as heads call it)")
    if evalue.requires_grad:
        evalue.backward()
    return dict(loss=value.detach(), weight_ones=ones, weight_zeros=zeros,
                avg_factor_2=a2, avg_factor_8=a8, empty=evalue.detach())


def _head_inputs(in_channels, strides, size, batch):
    chans = in_channels if isinstance(in_channels, int) else tuple(in_channels)
    return feature_maps(chans, strides, size, batch)


def check_head(cfg, in_channels: int | Sequence[int] = 16, strides: Sequence[int] = (8, 16),
               num_classes: int | None = 3, size: tuple[int, int] = (64, 64),
               batch: int = 2) -> dict:
    """Build a detection head as a detector does (``input_shape`` from
    ``in_channels`` / ``strides``, and ``num_classes`` unless the config sets
    it; ``num_classes=None`` for a head without classes, e.g. an RPN) and run
    ``loss`` and ``predict`` on a batch of images without objects, then with
    objects. Checks: every loss is finite and their sum has gradients;
    ``predict(feats, data_samples)`` returns one ``InstanceData`` per image
    with ``bboxes`` inside the image (``img_shape`` coordinates), ``scores``
    and ``labels`` in ``[0, num_classes)``. Returns the losses and
    predictions of the batch with objects."""
    from toolbox.registry import HEADS
    head = _build(cfg, HEADS, "head", _input_shape(in_channels, strides),
                  extra=None if num_classes is None else {"num_classes": num_classes})
    num_classes = num_classes or 1
    owner = f"head {_name(head)}"
    result = {}
    for label, counts in (("without objects", 0), ("with objects", 2)):
        _, samples = det_batch(batch, size, num_classes, num_objects=counts)
        head.train()
        losses = head.loss(_head_inputs(in_channels, strides, size, batch), samples)
        if not isinstance(losses, dict) or not any("loss" in k for k in losses):
            raise ContractError(f"{owner}: loss(feats, data_samples) must return a dict with "
                                f"'loss' keys, got {losses!r}")
        total = 0
        for key, value in losses.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if isinstance(v, Tensor) and not torch.isfinite(v).all():
                    raise ContractError(f"{owner}: loss '{key}' on images {label} is not "
                                        f"finite: {v}")
                if "loss" in key and isinstance(v, Tensor):
                    total = total + v.sum()
        if isinstance(total, Tensor) and total.requires_grad:
            total.backward()
        head.eval()
        with torch.no_grad():
            preds = head.predict(_head_inputs(in_channels, strides, size, batch), samples)
        if len(preds) != batch:
            raise ContractError(f"{owner}: predict returned {len(preds)} results for "
                                f"{batch} images")
        h, w = size
        for i, p in enumerate(preds):
            for field in ("bboxes", "scores", "labels"):
                if not hasattr(p, field):
                    raise ContractError(f"{owner}: predict result {i} has no '{field}'")
            boxes = p.bboxes
            if boxes.numel() and ((boxes[:, 0::2] < -1e-3).any() or (boxes[:, 1::2] < -1e-3).any()
                                  or (boxes[:, 0::2] > w + 1e-3).any()
                                  or (boxes[:, 1::2] > h + 1e-3).any()):
                raise ContractError(f"{owner}: predicted boxes on images {label} leave the "
                                    f"{w}x{h} image: {boxes[:3].tolist()} ...; clip them")
            if p.labels.numel() and (p.labels.min() < 0 or p.labels.max() >= num_classes):
                raise ContractError(f"{owner}: predicted labels outside [0, {num_classes})")
        result = dict(losses=losses, predictions=preds)
    return result


def check_seg_head(cfg, in_channels: int | Sequence[int] = 16, strides: Sequence[int] = (4, 8),
                   num_classes: int = 3, size: tuple[int, int] = (64, 64), batch: int = 2) -> dict:
    """Build a segmentation (decode) head as a segmentor does (``input_shape``
    from ``in_channels`` / ``strides``, ``num_classes`` unless the config
    sets it) and check ``loss`` (finite, with gradients) and ``predict``
    (logits ``[B, num_classes, ...]``)."""
    from toolbox.registry import HEADS
    head = _build(cfg, HEADS, "decode_head", _input_shape(in_channels, strides),
                  lambda specs: head_fill(specs, one_width=False), {"num_classes": num_classes})
    owner = f"head {_name(head)}"
    _, samples = seg_batch(batch, size, num_classes)
    feats = _head_inputs(in_channels, strides, size, batch)
    head.train()
    losses = head.loss(feats, samples)
    total = sum(v.sum() for k, v in losses.items() if "loss" in k and isinstance(v, Tensor))
    if not isinstance(total, Tensor) or not torch.isfinite(total):
        raise ContractError(f"{owner}: loss must return finite 'loss' Tensors, got {losses!r}")
    total.backward()
    head.eval()
    with torch.no_grad():
        logits = head.predict(feats, samples)
    if not isinstance(logits, Tensor) or logits.shape[:2] != (batch, num_classes):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ContractError(f"{owner}: predict must return logits [B={batch}, "
                            f"K={num_classes}, ...], got {shape}")
    return dict(losses=losses, logits=logits)


def check_transform(cfg, size: tuple[int, int] = (64, 64), seed: int = 0) -> dict:
    """Run a pipeline step on a result dict (``img`` uint8 HxWx3,
    ``gt_bboxes`` float32 [N, 4], ``gt_labels`` int64 [N], ``img_shape``,
    ``ori_shape``) and check it returns a dict whose boxes stay inside the
    (possibly new) image and whose labels stay aligned with the boxes."""
    import numpy as np

    from toolbox.registry import TRANSFORMS
    step = cfg if callable(cfg) and not isinstance(cfg, dict) else TRANSFORMS.build(cfg)
    owner = f"transform {type(step).__name__}"
    rng = np.random.default_rng(seed)
    h, w = size
    boxes = np.array([[4, 6, 30, 40], [20, 10, 60, 50]], dtype=np.float32)
    results = dict(img=rng.integers(0, 255, (h, w, 3), dtype=np.uint8), gt_bboxes=boxes,
                   gt_labels=np.array([0, 1], dtype=np.int64),
                   gt_ignore_flags=np.zeros(2, dtype=bool), img_shape=(h, w), ori_shape=(h, w),
                   img_path=None, img_id=0)
    out = step(results)
    if not isinstance(out, dict):
        raise ContractError(f"{owner}: must return the result dict, got {type(out).__name__}")
    img = out.get("img")
    if img is not None and hasattr(img, "shape"):
        nh, nw = img.shape[:2]
        b = np.asarray(out.get("gt_bboxes", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
        if len(b) and ((b < -1e-3).any() or (b[:, 0::2] > nw + 1e-3).any()
                       or (b[:, 1::2] > nh + 1e-3).any()):
            raise ContractError(f"{owner}: boxes leave the {nw}x{nh} image: {b.tolist()}")
        labels = out.get("gt_labels")
        if labels is not None and len(labels) != len(b):
            raise ContractError(f"{owner}: {len(b)} boxes but {len(labels)} labels")
    return out


