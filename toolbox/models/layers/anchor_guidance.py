"""The anchor-generation half of Guided Anchoring (Wang et al., "Region
Proposal by Guided Anchoring", CVPR 2019), composed by ``GARetinaHead`` and
``GARPNHead`` (moved here from ``toolbox.models.heads._guided_anchor``).

Per pyramid level, two 1x1 convs:

* **location branch**: one logit per cell, ``p(object centred here)``;
  trained with focal loss on the targets of
  :func:`~toolbox.structures.ga_targets.ga_location_targets`, averaged over
  the positive cells. At inference only cells with ``p > loc_filter_thr``
  keep their anchor, which makes the anchors sparse.
* **shape branch**: ``(dw, dh)`` per cell; the cell's single anchor is
  centred on the cell's point with ``w = sigma * stride * exp(dw)``,
  ``h = sigma * stride * exp(dh)`` (sigma 8 in the paper). Trained with the
  bounded IoU loss against the ground truth that
  :func:`~toolbox.structures.ga_targets.ga_shape_targets` picks, averaged
  over the positive cells.

The heads score and refine these "guided anchors" (detached: the
classification/regression losses do not train the shape branch) on
features adapted to the shapes (:class:`FeatureAdaption`). The guidance
keeps its own sparsity record: ``last_num_anchors`` (anchors kept per image
by the location filter, in the last loss or prediction) out of
``last_num_locations`` cells.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from toolbox.models.heads.parts import (CLASS_AGNOSTIC, build_part, ground_truth,
                                        loss_with_defaults)
from toolbox.models.heads.dense import assign_inside, regression_loss
from toolbox.structures import AnchorGenerator
from toolbox.structures.ga_targets import POSITIVE, ga_location_targets, ga_shape_targets

__all__ = ["AnchorGuidance", "check_levels", "shape_thresholds"]

DEFAULT_LOSS_LOC = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)
DEFAULT_LOSS_SHAPE = dict(type="BoundedIoULoss", beta=0.2, loss_weight=1.0)
MAX_LOG_RATIO = abs(math.log(16 / 1000))  # |dw|, |dh| clamp (as DeltaXYWHBBoxCoder's)


def shape_thresholds(owner: str, cfg: dict | None, defaults: dict) -> tuple[float, float]:
    """``(pos_iou_thr, min_pos_iou)`` of a head's ``shape_assigner`` config
    (merged over ``defaults``; other keys are refused)."""
    unknown = set(cfg or {}) - set(defaults)
    if unknown:
        raise ValueError(f"{owner}: unknown shape_assigner key(s) {sorted(unknown)}; "
                         f"accepted: {sorted(defaults)}")
    cfg = {**defaults, **(cfg or {})}
    return float(cfg["pos_iou_thr"]), float(cfg["min_pos_iou"])


def check_levels(owner: str, feats: Sequence[Tensor], strides: Sequence[int]) -> None:
    if len(feats) != len(strides):
        raise ValueError(f"{owner}: got {len(feats)} feature maps but the head is configured "
                         f"for {len(strides)} levels (strides {tuple(strides)})")


class AnchorGuidance(nn.Module):
    """Location and shape branches, their targets and losses, and the guided
    anchors they define.

    Args:
        owner: the head's name, for error messages.
        in_channels: width of the features both branches read.
        strides: stride of each level.
        sigma: anchor size unit in strides (``w = sigma * stride * exp(dw)``).
        approx_anchor_generator: :class:`AnchorGenerator` arguments of the
            approxs that define the shape targets (its smallest scale also
            sets the level assignment of location targets).
        center_ratio, ignore_ratio: sigma1 / sigma2 of the location targets.
        shape_pos_iou_thr, shape_min_pos_iou: the shape assignment thresholds.
        loc_filter_thr: cells whose location probability is not above this
            drop their anchor at inference.
        loss_loc, loss_shape: ``LOSSES`` configs (focal loss, bounded IoU).
    """

    def __init__(self, owner: str, in_channels: int, strides: Sequence[int], sigma: float,
                 approx_anchor_generator: dict, center_ratio: float, ignore_ratio: float,
                 shape_pos_iou_thr: float, shape_min_pos_iou: float, loc_filter_thr: float,
                 loss_loc: dict | None = None, loss_shape: dict | None = None):
        super().__init__()
        self.owner = owner
        self.strides = tuple(int(s) for s in strides)
        if sigma <= 0:
            raise ValueError(f"{owner}: 'sigma' must be > 0, got {sigma}")
        if not 0.0 <= loc_filter_thr < 1.0:
            raise ValueError(f"{owner}: 'loc_filter_thr' must be in [0, 1), got {loc_filter_thr}")
        if not 0.0 < center_ratio <= ignore_ratio <= 1.0:
            raise ValueError(f"{owner}: need 0 < 'center_ratio' <= 'ignore_ratio' <= 1, got "
                             f"{center_ratio} and {ignore_ratio}")
        self.sigma = float(sigma)
        self.approx_generator = build_part(approx_anchor_generator, AnchorGenerator,
                                           f"{owner}.approx_anchor_generator",
                                           strides=self.strides)
        if self.approx_generator.strides != self.strides:
            raise ValueError(f"{owner}: approx_anchor_generator has strides "
                             f"{self.approx_generator.strides} but the head has strides "
                             f"{self.strides}")
        self.center_ratio, self.ignore_ratio = float(center_ratio), float(ignore_ratio)
        self.shape_pos_iou_thr = float(shape_pos_iou_thr)
        self.shape_min_pos_iou = float(shape_min_pos_iou)
        self.loc_filter_thr = float(loc_filter_thr)
        self.loss_loc = loss_with_defaults(loss_loc, DEFAULT_LOSS_LOC)
        self.loss_shape = loss_with_defaults(loss_shape, DEFAULT_LOSS_SHAPE)
        if not getattr(self.loss_shape, "expects_boxes", False):
            raise ValueError(f"{owner}: 'loss_shape' must compare boxes (e.g. BoundedIoULoss), "
                             f"got {type(self.loss_shape).__name__}")
        self.conv_loc = nn.Conv2d(in_channels, 1, 1)
        self.conv_shape = nn.Conv2d(in_channels, 2, 1)
        self.last_num_anchors: list[int] = []
        self.last_num_locations = 0
        self.init_weights()

    def init_weights(self, prior_prob: float = 0.01) -> None:
        nn.init.normal_(self.conv_loc.weight, std=0.01)
        nn.init.constant_(self.conv_loc.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.normal_(self.conv_shape.weight, std=0.01)
        nn.init.zeros_(self.conv_shape.bias)

    @property
    def center_offset(self) -> float:
        return self.approx_generator.center_offset

    def forward(self, loc_feat: Tensor, shape_feat: Tensor) -> tuple[Tensor, Tensor]:
        """Location logits [B, 1, H, W] and shapes (dw, dh) [B, 2, H, W]."""
        return self.conv_loc(loc_feat), self.conv_shape(shape_feat)

    # ------------------------------------------------------------ anchors
    def decode(self, shape_pred: Tensor, level: int) -> Tensor:
        """[B, H * W, 4] anchors of one level, centred on the cell points,
        ``w = sigma * stride * exp(dw)`` (differentiable)."""
        batch, _, height, width = shape_pred.shape
        stride = self.strides[level]
        dtype, device = shape_pred.dtype, shape_pred.device
        xs = (torch.arange(width, device=device, dtype=dtype) + self.center_offset) * stride
        ys = (torch.arange(height, device=device, dtype=dtype) + self.center_offset) * stride
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack([xx, yy], dim=-1).reshape(1, -1, 2)
        deltas = shape_pred.permute(0, 2, 3, 1).reshape(batch, -1, 2)
        size = self.sigma * stride * deltas.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()
        return torch.cat([centres - size / 2, centres + size / 2], dim=-1)

    def guided_anchors(self, shape_preds: Sequence[Tensor]) -> list[Tensor]:
        """Detached anchors of every level, each [B, H * W, 4]."""
        return [self.decode(s.detach(), level) for level, s in enumerate(shape_preds)]

    def keep_masks(self, loc_preds: Sequence[Tensor]) -> list[Tensor]:
        """Per level, bool [B, H * W]: cells whose anchor survives the
        location filter (probability above ``loc_filter_thr``)."""
        return [p.detach().sigmoid().flatten(1) > self.loc_filter_thr for p in loc_preds]

    def valid_cells(self, featmap_sizes, img_shape, device) -> Tensor:
        """Bool [sum(H * W)]: cells inside the unpadded image ``img_shape``."""
        if img_shape is None:
            return torch.ones(sum(h * w for h, w in featmap_sizes), dtype=torch.bool,
                              device=device)
        flags = self.approx_generator.valid_flags(featmap_sizes, img_shape, device)
        num = self.approx_generator.num_base_anchors
        return torch.cat([f[::num] for f in flags])

    def assign(self, assigner, anchors: Tensor, keep: Tensor, featmap_sizes, img_shape,
               gt_boxes: Tensor, gt_labels: Tensor | None, ignored: Tensor | None
               ) -> tuple[Tensor, int]:
        """Assign one image's guided ``anchors`` [N, 4] (cells outside
        ``img_shape`` stay unassigned). Returns ``gt_inds`` [N] (-1 not
        counted, 0 negative, k > 0 the k-th gt box) and the number of anchors
        inside the image that survive the location filter ``keep`` [N]."""
        valid = self.valid_cells(featmap_sizes, img_shape, anchors.device)
        return assign_inside(assigner, anchors, valid, gt_boxes, gt_labels, ignored), \
            int((keep & valid).sum())

    def sparsity(self, kept: list[int], featmap_sizes, device) -> Tensor:
        """Record how many anchors each image kept (``last_num_anchors``) out of
        how many cells (``last_num_locations``); the mean, for the log."""
        self.last_num_anchors = list(kept)
        self.last_num_locations = sum(int(h) * int(w) for h, w in featmap_sizes)
        return torch.tensor(sum(kept) / max(len(kept), 1), device=device)

    # --------------------------------------------------------------- loss
    def loss(self, loc_preds: Sequence[Tensor], shape_preds: Sequence[Tensor],
             data_samples) -> dict[str, Tensor]:
        """``loss_anchor_loc`` and ``loss_anchor_shape`` of a batch."""
        featmap_sizes = [tuple(p.shape[-2:]) for p in loc_preds]
        device = loc_preds[0].device
        logits = torch.cat([p.flatten(1) for p in loc_preds], dim=1)  # [B, N]
        boxes = torch.cat([self.decode(s, lvl) for lvl, s in enumerate(shape_preds)], dim=1)
        approxs = torch.cat(self.approx_generator.grid_anchors(featmap_sizes, device))
        approxs = approxs.reshape(-1, self.approx_generator.num_base_anchors, 4)
        anchor_scale = min(self.approx_generator.scales)
        base = self.approx_generator.base_sizes[0] / self.strides[0]
        loc_logits, loc_labels, shape_pred, shape_target = [], [], [], []
        for i, sample in enumerate(data_samples):
            img_shape = sample.metainfo.get("img_shape")
            gt_boxes, _, _ = ground_truth(sample, device, CLASS_AGNOSTIC, self.owner)
            target = torch.cat([t.flatten() for t in ga_location_targets(
                gt_boxes, featmap_sizes, self.strides, anchor_scale * base, self.center_ratio,
                self.ignore_ratio, img_shape, self.center_offset)])
            counted = target >= 0
            loc_logits.append(logits[i, counted])
            loc_labels.append((target[counted] != POSITIVE).long())  # 0 = object, 1 = none
            pos, matched = ga_shape_targets(approxs, gt_boxes, self.shape_pos_iou_thr,
                                            self.shape_min_pos_iou,
                                            self.valid_cells(featmap_sizes, img_shape, device))
            shape_pred.append(boxes[i, pos])
            shape_target.append(matched[pos])
        loc_labels = torch.cat(loc_labels)
        num_loc_pos = max(float((loc_labels == 0).sum()), 1.0)
        loss_loc = self.loss_loc(torch.cat(loc_logits)[:, None], loc_labels,
                                 avg_factor=num_loc_pos)
        shape_pred, shape_target = torch.cat(shape_pred), torch.cat(shape_target)
        loss_shape = regression_loss(self.loss_shape, shape_pred, shape_target,
                                     float(shape_pred.shape[0]), boxes)
        return dict(loss_anchor_loc=loss_loc, loss_anchor_shape=loss_shape)
