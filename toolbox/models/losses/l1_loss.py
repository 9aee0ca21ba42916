"""L1 regression loss (the base of the other element-wise box losses)."""
from __future__ import annotations

from torch import Tensor, nn

from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss

__all__ = ["L1Loss"]


class L1Loss(nn.Module):
    """``|pred - target|`` element-wise; ``forward(pred, target, weight=None,
    avg_factor=None)`` with ``weight`` [N] or broadcastable to ``pred``.

    Subclasses change only :meth:`elementwise`."""

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.reduction = check_reduction(type(self).__name__, reduction)
        self.loss_weight = float(loss_weight)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs()

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        name = type(self).__name__
        if pred.shape != target.shape:
            raise ValueError(f"{name}: 'pred' {tuple(pred.shape)} and 'target' "
                             f"{tuple(target.shape)} must have the same shape")
        if pred.numel() == 0:
            return pred.sum() * 0.0
        loss = self.elementwise(pred, target)
        weight = expand_weight(weight, loss, name)
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)
