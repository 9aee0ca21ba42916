"""Generalized IoU loss (Rezatofighi et al., 2019) on x1 y1 x2 y2 boxes."""
from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss

from toolbox.models.losses.reduction import check_reduction, weight_reduce_loss

__all__ = ["GIoULoss"]


class GIoULoss(nn.Module):
    """``1 - GIoU(pred, target)`` per box pair.

    ``forward(pred [N, 4], target [N, 4], weight=None, avg_factor=None)``;
    ``weight`` is [N] (or [N, 4], averaged over the 4 coordinates). Boxes,
    not deltas: heads decode their predictions first (``expects_boxes``).
    """

    expects_boxes = True

    def __init__(self, eps: float = 1e-7, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.eps = float(eps)
        self.reduction = check_reduction("GIoULoss", reduction)
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.shape != target.shape or pred.dim() != 2 or pred.shape[-1] != 4:
            raise ValueError("GIoULoss: 'pred' and 'target' must both be boxes [N, 4], got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        if pred.numel() == 0:
            return pred.sum() * 0.0
        loss = generalized_box_iou_loss(pred, target, reduction="none", eps=self.eps)
        if weight is not None:
            if weight.dim() == 2:
                weight = weight.mean(dim=-1)
            if weight.shape != loss.shape:
                raise ValueError(f"GIoULoss: 'weight' must be [N] or [N, 4] for N={loss.shape[0]}, "
                                 f"got {tuple(weight.shape)}")
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)
