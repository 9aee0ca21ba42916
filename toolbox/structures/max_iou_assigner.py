"""Assign each prior (anchor) to a ground-truth box by maximum IoU.

Convention of :class:`AssignResult.gt_inds` (one entry per prior):
``-1`` ignored (neither positive nor negative), ``0`` negative
(background), ``k > 0`` positive, matched to ground truth ``k - 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_area, box_iou


@dataclass
class AssignResult:
    """Outcome of an assignment.

    Attributes:
        num_gts: number of ground-truth boxes.
        gt_inds: long Tensor[N]: -1 ignored, 0 negative, k > 0 -> gt k - 1.
        max_overlaps: float Tensor[N], each prior's best IoU with any gt
            (-1 where an ignore region claimed the prior).
        labels: long Tensor[N], the class of the matched gt, -1 elsewhere.
    """

    num_gts: int
    gt_inds: Tensor
    max_overlaps: Tensor
    labels: Tensor

    @property
    def pos_mask(self) -> Tensor:
        return self.gt_inds > 0

    @property
    def neg_mask(self) -> Tensor:
        return self.gt_inds == 0

    @property
    def ignore_mask(self) -> Tensor:
        return self.gt_inds < 0

    @property
    def num_priors(self) -> int:
        return int(self.gt_inds.numel())


def box_iof(priors: Tensor, regions: Tensor) -> Tensor:
    """[N, M] intersection over the area of each prior (intersection over
    foreground), for priors [N, 4] and regions [M, 4] in x1 y1 x2 y2."""
    lt = torch.max(priors[:, None, :2], regions[None, :, :2])
    rb = torch.min(priors[:, None, 2:], regions[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / box_area(priors).clamp(min=torch.finfo(priors.dtype).eps)[:, None]


class MaxIoUAssigner:
    """Max-IoU assignment (Faster R-CNN, RetinaNet, SSD).

    1. Every prior starts ignored.
    2. Priors whose best IoU lies in ``[0, neg_iou_thr)`` (or in ``[lo, hi)``
       when ``neg_iou_thr`` is a pair) become negatives.
    3. Priors whose best IoU is ``>= pos_iou_thr`` become positives of that gt.
    4. With ``match_low_quality``, each gt also claims its best prior(s) if
       that IoU is ``>= min_pos_iou`` (all tied priors when
       ``gt_max_assign_all``), so that no gt is left without a positive. A
       gt that overlaps no prior at all (best IoU 0) claims nothing.
       ``low_quality_gt`` says which gt a claimed prior is matched to:
       ``'claiming'`` (the gt that claimed it; the last one when several do)
       or ``'best'`` (the prior's own best-IoU gt, as torchvision's
       ``Matcher(allow_low_quality_matches=True)`` does).

    With ``ignore_iof_thr > 0``, priors lying inside ignore regions
    (intersection over the prior's area ``> ignore_iof_thr``) take no part
    in steps 2-3 and stay ignored.
    """

    def __init__(self, pos_iou_thr: float, neg_iou_thr: float | Sequence[float],
                 min_pos_iou: float = 0.0, gt_max_assign_all: bool = True,
                 match_low_quality: bool = True, ignore_iof_thr: float = -1.0,
                 low_quality_gt: str = "claiming"):
        if not 0.0 <= pos_iou_thr <= 1.0:
            raise ValueError(f"MaxIoUAssigner: 'pos_iou_thr' must be in [0, 1], got {pos_iou_thr}")
        if isinstance(neg_iou_thr, (int, float)):
            if neg_iou_thr > pos_iou_thr:
                raise ValueError(f"MaxIoUAssigner: 'neg_iou_thr' ({neg_iou_thr}) must not "
                                 f"exceed 'pos_iou_thr' ({pos_iou_thr})")
            self.neg_range = (0.0, float(neg_iou_thr))
        elif isinstance(neg_iou_thr, Sequence) and len(neg_iou_thr) == 2:
            lo, hi = float(neg_iou_thr[0]), float(neg_iou_thr[1])
            if not lo <= hi:
                raise ValueError(f"MaxIoUAssigner: 'neg_iou_thr' range must be (lo, hi) "
                                 f"with lo <= hi, got {neg_iou_thr}")
            self.neg_range = (lo, hi)
        else:
            raise TypeError("MaxIoUAssigner: 'neg_iou_thr' must be a float or a (lo, hi) "
                            f"pair, got {neg_iou_thr!r}")
        if low_quality_gt not in ("claiming", "best"):
            raise ValueError("MaxIoUAssigner: 'low_quality_gt' must be 'claiming' or 'best', "
                             f"got {low_quality_gt!r}")
        self.low_quality_gt = low_quality_gt
        self.pos_iou_thr = float(pos_iou_thr)
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = float(min_pos_iou)
        self.gt_max_assign_all = gt_max_assign_all
        self.match_low_quality = match_low_quality
        self.ignore_iof_thr = float(ignore_iof_thr)

    @staticmethod
    def _check_boxes(boxes: Tensor, name: str) -> None:
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4:
            shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
            raise ValueError(f"MaxIoUAssigner.assign: '{name}' must be a Tensor[N, 4] "
                             f"(x1 y1 x2 y2), got {shape}")

    def assign(self, priors: Tensor, gt_bboxes: Tensor, gt_labels: Tensor | None = None,
               ignored_bboxes: Tensor | None = None) -> AssignResult:
        """Assign ``priors`` [N, 4] to ``gt_bboxes`` [G, 4] (labels [G])."""
        self._check_boxes(priors, "priors")
        self._check_boxes(gt_bboxes, "gt_bboxes")
        if gt_labels is not None and gt_labels.shape[0] != gt_bboxes.shape[0]:
            raise ValueError(f"MaxIoUAssigner.assign: 'gt_labels' has {gt_labels.shape[0]} "
                             f"entries for {gt_bboxes.shape[0]} boxes")
        num_gts, num_priors = gt_bboxes.shape[0], priors.shape[0]
        device = priors.device
        gt_inds = priors.new_full((num_priors,), -1, dtype=torch.long)
        labels = priors.new_full((num_priors,), -1, dtype=torch.long)

        if num_priors == 0:
            return AssignResult(num_gts, gt_inds, priors.new_zeros((0,)), labels)
        ignore = None
        if (self.ignore_iof_thr > 0 and ignored_bboxes is not None
                and ignored_bboxes.numel() > 0):
            self._check_boxes(ignored_bboxes, "ignored_bboxes")
            iof = box_iof(priors, ignored_bboxes.to(priors.dtype)).max(dim=1).values
            ignore = iof > self.ignore_iof_thr
        if num_gts == 0:  # nothing to match: every prior is background
            gt_inds.zero_()
            if ignore is not None:
                gt_inds[ignore] = -1
            return AssignResult(num_gts, gt_inds, priors.new_zeros((num_priors,)), labels)

        overlaps = box_iou(gt_bboxes.to(priors.dtype), priors)  # [G, N]
        if ignore is not None:
            overlaps[:, ignore] = -1
        max_overlaps, argmax = overlaps.max(dim=0)
        lo, hi = self.neg_range
        gt_inds[(max_overlaps >= lo) & (max_overlaps < hi)] = 0
        pos = max_overlaps >= self.pos_iou_thr
        gt_inds[pos] = argmax[pos] + 1

        if self.match_low_quality:
            gt_max, gt_argmax = overlaps.max(dim=1)
            claims = (gt_max >= self.min_pos_iou) & (gt_max > 0)
            if self.low_quality_gt == "best":  # claimed priors take their own best gt
                if self.gt_max_assign_all:
                    claimed = ((overlaps == gt_max[:, None]) & claims[:, None]).any(dim=0)
                else:
                    claimed = torch.zeros_like(gt_inds, dtype=torch.bool)
                    claimed[gt_argmax[claims]] = True
                gt_inds = torch.where(claimed, argmax + 1, gt_inds)
            elif self.gt_max_assign_all:
                # every prior tied with a gt's best IoU; the last such gt wins
                ties = (overlaps == gt_max[:, None]) & claims[:, None]
                order = torch.arange(1, num_gts + 1, device=device)[:, None]
                best = torch.where(ties, order, torch.zeros_like(order)).max(dim=0).values
                gt_inds = torch.where(best > 0, best, gt_inds)
            else:
                for i in torch.nonzero(claims).flatten().tolist():
                    gt_inds[gt_argmax[i]] = i + 1

        if gt_labels is not None:
            matched = gt_inds > 0
            labels[matched] = gt_labels.to(device)[gt_inds[matched] - 1].long()
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(pos_iou_thr={self.pos_iou_thr}, "
                f"neg_iou_thr={self.neg_iou_thr}, min_pos_iou={self.min_pos_iou}, "
                f"match_low_quality={self.match_low_quality}, "
                f"ignore_iof_thr={self.ignore_iof_thr})")
