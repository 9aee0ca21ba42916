"""Helpers every head shares: building parts from configs and mapping
predicted boxes back to the original image."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from toolbox.registry import LOSSES, check_arguments
from toolbox.structures import clip_boxes


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


def build_loss(cfg) -> nn.Module:
    return cfg if isinstance(cfg, nn.Module) else LOSSES.build(cfg)


def scale_factor_of(meta: dict) -> tuple[float, float]:
    """(w_scale, h_scale) of an image's metainfo (1, 1 when absent)."""
    factor = meta.get("scale_factor", (1.0, 1.0))
    if isinstance(factor, (int, float)):
        return float(factor), float(factor)
    factor = [float(f) for f in factor]
    if len(factor) != 2:
        raise ValueError(f"metainfo 'scale_factor' must be (w_scale, h_scale), got {factor}")
    return factor[0], factor[1]


def flip_boxes(boxes: Tensor, shape: Sequence[int], direction: str) -> Tensor:
    """Mirror x1 y1 x2 y2 boxes inside an image of ``shape`` (h, w)."""
    h, w = float(shape[0]), float(shape[1])
    x1, y1, x2, y2 = boxes.unbind(-1)
    if direction in ("horizontal", "diagonal"):
        x1, x2 = w - x2, w - x1
    if direction in ("vertical", "diagonal"):
        y1, y2 = h - y2, h - y1
    if direction not in ("horizontal", "vertical", "diagonal"):
        raise ValueError(f"metainfo 'flip_direction' must be horizontal, vertical or diagonal, "
                         f"got {direction!r}")
    return torch.stack([x1, y1, x2, y2], dim=-1)


def boxes_to_original(boxes: Tensor, meta: dict) -> Tensor:
    """Map boxes from ``img_shape`` coordinates back to the original image:
    undo the flip (done in ``img_shape`` coordinates, after resizing), divide
    by ``scale_factor`` and clip to ``ori_shape``."""
    if meta.get("flip", False):
        if "img_shape" not in meta:
            raise ValueError("metainfo has flip=True but no 'img_shape' to undo it in")
        boxes = flip_boxes(boxes, meta["img_shape"], meta.get("flip_direction", "horizontal"))
    w_scale, h_scale = scale_factor_of(meta)
    boxes = boxes / boxes.new_tensor([w_scale, h_scale, w_scale, h_scale])
    if "ori_shape" in meta:
        boxes = clip_boxes(boxes, meta["ori_shape"])
    return boxes


def ground_truth(sample, device, num_classes: int, owner: str
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(boxes [N, 4], labels [N], ignored boxes [M, 4] or None)`` of a
    ``DetDataSample``, checked: labels must be 0-based indices below
    ``num_classes`` (``owner`` names the head in the error)."""
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


def merge_cfg(owner: str, base: dict, override: dict | None, what: str) -> dict:
    """``base`` updated with ``override``; keys ``base`` lacks are refused,
    naming the head (``owner``) and the config (``what``)."""
    unknown = set(override or {}) - set(base)
    if unknown:
        raise ValueError(f"{owner}: unknown {what} key(s) {sorted(unknown)}; "
                         f"accepted: {sorted(base)}")
    return {**base, **(override or {})}


def flatten_levels(maps: Sequence[Tensor], channels: int) -> Tensor:
    """[B, A * K, H, W] per level -> [B, sum(H * W * A), K], in anchor order
    (level, row, column, anchor)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels) for m in maps],
                     dim=1)


def sample_metas(data_samples, batch: int) -> list[dict]:
    """The samples' metainfo dicts, or ``batch`` empty ones without samples."""
    return ([s.metainfo for s in data_samples] if data_samples is not None
            else [{} for _ in range(batch)])


def finish_proposals(proposals: list, metas: Sequence[dict], rescale: bool) -> list:
    """Give RPN proposals ``labels`` = 0 (one class: object) and, with
    ``rescale``, map them to original-image coordinates."""
    for proposal, meta in zip(proposals, metas):
        if rescale:
            proposal.bboxes = boxes_to_original(proposal.bboxes, meta)
        proposal.labels = proposal.scores.new_zeros(len(proposal), dtype=torch.long)
    return proposals
