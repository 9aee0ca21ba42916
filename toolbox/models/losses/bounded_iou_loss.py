"""Bounded IoU loss (Tychsen-Smith & Petersson, "Improving Object
Localization with Fitness NMS and Bounded IoU Loss", CVPR 2018).

Each coordinate is scored by an upper bound of the IoU reachable when only
that coordinate is wrong, for target size ``(wt, ht)``, predicted size
``(w, h)`` and centre offset ``(dx, dy)`` of the target from the prediction::

    IoU_B(x) = max(0, (wt - 2|dx|) / (wt + 2|dx|))
    IoU_B(w) = min(w / wt, wt / w)          (likewise y, h)

and the loss of each coordinate is ``smooth_l1(1 - IoU_B, beta)``. The
target is a constant (no gradient). Guided Anchoring trains its anchor
shapes with it (beta 0.2).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss

__all__ = ["BoundedIoULoss"]


class BoundedIoULoss(nn.Module):
    """``forward(pred [N, 4], target [N, 4], weight=None, avg_factor=None)``
    on x1 y1 x2 y2 boxes; the element-wise loss is [N, 4] (dx, dy, dw, dh),
    so with ``avg_factor`` = number of boxes the result is the per-box sum of
    the four terms, averaged. ``weight`` is [N] or broadcastable to [N, 4].
    """

    expects_boxes = True

    def __init__(self, beta: float = 0.2, eps: float = 1e-3, reduction: str = "mean",
                 loss_weight: float = 1.0):
        super().__init__()
        if beta <= 0:
            raise ValueError(f"BoundedIoULoss: 'beta' must be > 0, got {beta}")
        self.beta = float(beta)
        self.eps = float(eps)
        self.reduction = check_reduction("BoundedIoULoss", reduction)
        self.loss_weight = float(loss_weight)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """[N, 4] smooth-L1 of ``1 - IoU_B`` for dx, dy, dw, dh."""
        pred_ctr = (pred[:, :2] + pred[:, 2:]) * 0.5
        pred_wh = pred[:, 2:] - pred[:, :2]
        with torch.no_grad():
            target_ctr = (target[:, :2] + target[:, 2:]) * 0.5
            target_wh = target[:, 2:] - target[:, :2]
        offset = (target_ctr - pred_ctr).abs()
        loss_ctr = 1 - torch.clamp((target_wh - 2 * offset) / (target_wh + 2 * offset + self.eps),
                                   min=0)
        loss_wh = 1 - torch.min(target_wh / (pred_wh + self.eps), pred_wh / (target_wh + self.eps))
        terms = torch.cat([loss_ctr, loss_wh], dim=-1)
        return torch.where(terms < self.beta, 0.5 * terms * terms / self.beta,
                           terms - 0.5 * self.beta)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.shape != target.shape or pred.dim() != 2 or pred.shape[-1] != 4:
            raise ValueError("BoundedIoULoss: 'pred' and 'target' must both be boxes [N, 4], "
                             f"got {tuple(pred.shape)} and {tuple(target.shape)}")
        if pred.numel() == 0:
            return pred.sum() * 0.0
        loss = self.elementwise(pred, target.to(pred.dtype))
        weight = expand_weight(weight, loss, "BoundedIoULoss")
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, loss_weight={self.loss_weight}"
