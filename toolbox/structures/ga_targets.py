"""Training targets of Guided Anchoring (Wang et al., "Region Proposal by
Guided Anchoring", CVPR 2019).

**Location targets** (which cells should hold an anchor). Each ground truth
goes to one pyramid level by its scale ``sqrt(w * h)``, as FPN assigns RoIs:
``level = floor(log2(scale / (anchor_scale * strides[0])) + 0.5)``, clamped
to the pyramid. On that level, with the box in cell units:

* the *centre region* (the box shrunk about its centre to ``center_ratio``
  = sigma1 = 0.2 of its width and height) is positive;
* the *ignore region* (shrunk to ``ignore_ratio`` = sigma2 = 0.5) minus the
  centre region is ignored;
* on the two adjacent levels the same ignore region is ignored too;
* every other cell is negative.

A region's cells are those whose indices lie between its rounded extremes
(inclusive, rounding half up), so every ground truth gets at least one
centre cell. Cell ``(y, x)`` of a level with stride ``s`` sits at
``((x + center_offset) * s, (y + center_offset) * s)`` in the image, the
point its anchors are centred on. A positive cell wins over an ignored one;
cells that only cover batch padding (outside ``img_shape``) are ignored.

**Shape targets** (which ground truth a cell's anchor should take the shape
of). The best shape of an anchor centred on a cell is not known in closed
form, so, as in the paper, it is approximated with ``A`` (9) sampled shapes
per cell (the "approxs": RetinaNet-style anchors of 3 scales x 3 ratios):
the cell's IoU with a ground truth is the best IoU of its approxs. A cell
is positive for the ground truth it overlaps most when that IoU is at least
``pos_iou_thr``; each ground truth also claims its best cell(s) when their
IoU is at least ``min_pos_iou`` (so no ground truth goes without one).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


def target_levels(gt_boxes: Tensor, anchor_scale: float, base_stride: int,
                  num_levels: int) -> Tensor:
    """Pyramid level [G] of each ground truth [G, 4] (x1 y1 x2 y2)."""
    w = (gt_boxes[:, 2] - gt_boxes[:, 0]).clamp(min=1e-6)
    h = (gt_boxes[:, 3] - gt_boxes[:, 1]).clamp(min=1e-6)
    scale = (w * h).sqrt()
    level = torch.floor(torch.log2(scale / (anchor_scale * base_stride)) + 0.5)
    return level.clamp(0, num_levels - 1).long()


def _region(box: Tensor, ratio: float, stride: int, center_offset: float,
            size: Sequence[int]) -> tuple[int, int, int, int] | None:
    """Inclusive cell range ``(x1, y1, x2, y2)`` of ``box`` shrunk to ``ratio``
    of its size about its centre, on a ``size`` = (H, W) map; None if empty."""
    x1, y1, x2, y2 = (float(v) / stride - center_offset for v in box)
    shrink = (1.0 - ratio) / 2.0
    lo_x, hi_x = (1 - shrink) * x1 + shrink * x2, shrink * x1 + (1 - shrink) * x2
    lo_y, hi_y = (1 - shrink) * y1 + shrink * y2, shrink * y1 + (1 - shrink) * y2
    cx1, cx2 = max(math.floor(lo_x + 0.5), 0), min(math.floor(hi_x + 0.5), size[1] - 1)
    cy1, cy2 = max(math.floor(lo_y + 0.5), 0), min(math.floor(hi_y + 0.5), size[0] - 1)
    if cx1 > cx2 or cy1 > cy2:
        return None
    return cx1, cy1, cx2, cy2


def _check_ratios(center_ratio: float, ignore_ratio: float) -> None:
    if not 0.0 < center_ratio <= ignore_ratio <= 1.0:
        raise ValueError("ga_location_targets: need 0 < 'center_ratio' <= 'ignore_ratio' <= 1, "
                         f"got center_ratio={center_ratio}, ignore_ratio={ignore_ratio}")


def ga_location_targets(gt_boxes: Tensor, featmap_sizes: Sequence[Sequence[int]],
                        strides: Sequence[int], anchor_scale: float,
                        center_ratio: float = 0.2, ignore_ratio: float = 0.5,
                        img_shape: Sequence[int] | None = None,
                        center_offset: float = 0.0) -> list[Tensor]:
    """Location targets of one image, one long Tensor[H, W] per level with
    ``1`` positive, ``0`` negative and ``-1`` ignored (see the module notes).

    Args:
        gt_boxes: [G, 4] ground-truth boxes in ``img_shape`` coordinates.
        featmap_sizes: (H, W) of each level.
        strides: stride of each level.
        anchor_scale: level assignment's base size in strides of the first
            level (the approxs' ``octave_base_scale``).
        center_ratio, ignore_ratio: sigma1 and sigma2 of the paper.
        img_shape: (h, w) of the unpadded image; cells beyond it are ignored.
        center_offset: where a cell's point sits inside it, in strides.
    """
    if len(featmap_sizes) != len(strides):
        raise ValueError(f"ga_location_targets: {len(featmap_sizes)} feature-map sizes for "
                         f"{len(strides)} strides {tuple(strides)}")
    _check_ratios(center_ratio, ignore_ratio)
    device = gt_boxes.device
    num_levels = len(strides)
    positive = [torch.zeros(tuple(int(v) for v in s), dtype=torch.bool, device=device)
                for s in featmap_sizes]
    ignored = [torch.zeros_like(p) for p in positive]
    if gt_boxes.numel():
        levels = target_levels(gt_boxes, anchor_scale, strides[0], num_levels).tolist()
        for box, level in zip(gt_boxes.tolist(), levels):
            for lvl in (level - 1, level, level + 1):
                if not 0 <= lvl < num_levels:
                    continue
                region = _region(box, ignore_ratio, strides[lvl], center_offset,
                                 featmap_sizes[lvl])
                if region is not None:
                    x1, y1, x2, y2 = region
                    ignored[lvl][y1:y2 + 1, x1:x2 + 1] = True
            region = _region(box, center_ratio, strides[level], center_offset,
                             featmap_sizes[level])
            if region is not None:
                x1, y1, x2, y2 = region
                positive[level][y1:y2 + 1, x1:x2 + 1] = True
    targets = []
    for pos, ign, stride in zip(positive, ignored, strides):
        target = torch.full(pos.shape, NEGATIVE, dtype=torch.long, device=device)
        target[ign] = IGNORED
        target[pos] = POSITIVE
        if img_shape is not None:  # cells covering only batch padding
            valid_h = min(math.ceil(img_shape[0] / stride), pos.shape[0])
            valid_w = min(math.ceil(img_shape[1] / stride), pos.shape[1])
            target[valid_h:, :] = IGNORED
            target[:, valid_w:] = IGNORED
        targets.append(target)
    return targets


def ga_shape_targets(approxs: Tensor, gt_boxes: Tensor, pos_iou_thr: float = 0.5,
                     min_pos_iou: float = 0.0, valid: Tensor | None = None
                     ) -> tuple[Tensor, Tensor]:
    """Shape targets of one image from its approximate anchors.

    Args:
        approxs: [N, A, 4] the ``A`` sampled anchor shapes of each of the
            ``N`` cells (all levels concatenated, in cell order).
        gt_boxes: [G, 4] ground-truth boxes.
        pos_iou_thr: a cell is positive for its best ground truth when their
            approximate IoU (best over the cell's approxs) reaches this.
        min_pos_iou: each ground truth also claims its best cell(s) when
            that IoU reaches this (and is above 0).
        valid: optional bool [N]; other cells are never positive.

    Returns:
        ``(pos [N] bool, matched [N, 4])``: the positive cells and the
        ground-truth box each one should take the shape of (zeros elsewhere).
    """
    if approxs.dim() != 3 or approxs.shape[-1] != 4:
        raise ValueError(f"ga_shape_targets: 'approxs' must be [N, A, 4], got "
                         f"{tuple(approxs.shape)}")
    if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4:
        raise ValueError(f"ga_shape_targets: 'gt_boxes' must be [G, 4], got "
                         f"{tuple(gt_boxes.shape)}")
    num_cells, num_approx = approxs.shape[:2]
    pos = torch.zeros(num_cells, dtype=torch.bool, device=approxs.device)
    matched = approxs.new_zeros((num_cells, 4))
    if gt_boxes.numel() == 0 or num_cells == 0:
        return pos, matched
    gt_boxes = gt_boxes.to(approxs.dtype)
    overlaps = box_iou(gt_boxes, approxs.reshape(-1, 4))  # [G, N * A]
    overlaps = overlaps.reshape(-1, num_cells, num_approx).max(dim=2).values  # [G, N]
    if valid is not None:
        overlaps[:, ~valid] = -1.0
    best, best_gt = overlaps.max(dim=0)
    gt_inds = torch.where(best >= pos_iou_thr, best_gt + 1, torch.zeros_like(best_gt))
    gt_best = overlaps.max(dim=1, keepdim=True).values  # [G, 1]
    claims = (overlaps == gt_best) & (gt_best >= min_pos_iou) & (gt_best > 0)
    order = torch.arange(1, gt_boxes.shape[0] + 1, device=approxs.device)[:, None]
    claimed = torch.where(claims, order, torch.zeros_like(order)).max(dim=0).values
    gt_inds = torch.where(claimed > 0, claimed, gt_inds)
    pos = gt_inds > 0
    matched[pos] = gt_boxes[gt_inds[pos] - 1]
    return pos, matched
