"""DETR's bipartite matcher (Carion et al. 2020, sec. 3.1).

For one image, the cost of assigning prediction ``i`` to ground-truth box
``j`` is::

    cost_class * -p_i(c_j) + cost_bbox * ||b_i - b_j||_1 + cost_giou * -GIoU(b_i, b_j)

with ``p_i`` the softmax over the ``C + 1`` logits and boxes normalised
``(cx, cy, w, h)`` (the L1 term) converted to corners for GIoU. The
one-to-one assignment of least total cost is found by
``scipy.optimize.linear_sum_assignment``; predictions left unmatched are
"no object".

With ``class_cost='focal'`` (Deformable DETR / DINO, for heads trained with
a sigmoid focal loss) the logits are ``[Q, C]`` sigmoid logits without a
"no object" class and the class term is the focal loss of the positive
minus that of the negative at the ground-truth class:
``alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma (-log(1 - p))``.
"""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher"]


class HungarianMatcher:
    """Optimal one-to-one matching of predictions to ground truth.

    Args:
        cost_class: weight of ``-prob[class]`` (1 in DETR).
        cost_bbox: weight of the L1 distance of normalised cx, cy, w, h (5).
        cost_giou: weight of ``-GIoU`` (2).
        class_cost: ``'softmax'`` (DETR, default) or ``'focal'`` (module docstring).
        focal_alpha / focal_gamma: the focal class cost's alpha (0.25) and gamma (2).
    """

    CLASS_COSTS = ("softmax", "focal")

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 class_cost: str = "softmax", focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0):
        if class_cost not in self.CLASS_COSTS:
            raise ValueError(f"HungarianMatcher: 'class_cost' must be one of {self.CLASS_COSTS}, "
                             f"got {class_cost!r}")
        self.class_cost = class_cost
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        weights = dict(cost_class=cost_class, cost_bbox=cost_bbox, cost_giou=cost_giou)
        for name, value in weights.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"HungarianMatcher: '{name}' must be a number >= 0, got {value!r}")
        if not any(weights.values()):
            raise ValueError("HungarianMatcher: all costs are 0; set at least one of "
                             "cost_class, cost_bbox, cost_giou")
        self.cost_class = float(cost_class)
        self.cost_bbox = float(cost_bbox)
        self.cost_giou = float(cost_giou)

    def cost_matrix(self, cls_logits: Tensor, boxes: Tensor, gt_labels: Tensor,
                    gt_boxes: Tensor) -> Tensor:
        """``[Q, N]`` cost of prediction ``q`` taking ground truth ``n``
        (``boxes``/``gt_boxes``: normalised cx, cy, w, h)."""
        if self.class_cost == "focal":
            prob = cls_logits.sigmoid()[:, gt_labels]
            pos = self.focal_alpha * (1 - prob) ** self.focal_gamma * -(prob + 1e-8).log()
            neg = (1 - self.focal_alpha) * prob ** self.focal_gamma * -(1 - prob + 1e-8).log()
            cost = (pos - neg) * self.cost_class
        else:
            cost = -cls_logits.softmax(-1)[:, gt_labels] * self.cost_class
        cost = cost + torch.cdist(boxes, gt_boxes, p=1) * self.cost_bbox
        giou = generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"),
                                   box_convert(gt_boxes, "cxcywh", "xyxy"))
        return cost - giou * self.cost_giou

    @torch.no_grad()
    def match(self, cls_logits: Tensor, boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor
              ) -> tuple[Tensor, Tensor]:
        """``(pred_indices, gt_indices)``: long tensors of length
        ``min(Q, N)``, ``gt_indices`` ordered by prediction index.

        ``cls_logits`` [Q, C + 1] (the last class "no object"), ``boxes``
        [Q, 4], ``gt_labels`` [N] in ``[0, C)``, ``gt_boxes`` [N, 4].
        """
        if cls_logits.dim() != 2 or boxes.shape != (cls_logits.shape[0], 4):
            raise ValueError(f"HungarianMatcher: 'cls_logits' must be [Q, C+1] and 'boxes' "
                             f"[Q, 4], got {tuple(cls_logits.shape)} and {tuple(boxes.shape)}")
        if gt_boxes.dim() != 2 or gt_boxes.shape[-1] != 4 or gt_labels.shape != gt_boxes.shape[:1]:
            raise ValueError(f"HungarianMatcher: 'gt_boxes' must be [N, 4] with 'gt_labels' [N], "
                             f"got {tuple(gt_boxes.shape)} and {tuple(gt_labels.shape)}")
        device = cls_logits.device
        if gt_labels.numel() == 0:
            empty = torch.empty(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        num_classes = cls_logits.shape[1] - (self.class_cost == "softmax")
        if gt_labels.min() < 0 or gt_labels.max() >= num_classes:
            raise ValueError(f"HungarianMatcher: 'gt_labels' must lie in [0, "
                             f"{num_classes}) (softmax: the last logit is 'no object'), got "
                             f"[{int(gt_labels.min())}, {int(gt_labels.max())}]")
        cost = self.cost_matrix(cls_logits.float(), boxes.float(), gt_labels, gt_boxes.float())
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        return (torch.as_tensor(rows, dtype=torch.long, device=device),
                torch.as_tensor(cols, dtype=torch.long, device=device))

    def __repr__(self) -> str:
        extra = "" if self.class_cost == "softmax" else (
            f", class_cost='focal', focal_alpha={self.focal_alpha}, "
            f"focal_gamma={self.focal_gamma}")
        return (f"HungarianMatcher(cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, "
                f"cost_giou={self.cost_giou}{extra})")
