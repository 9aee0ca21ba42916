"""L1 and smooth-L1 regression losses."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from toolbox.models.losses._reduction import check_reduction, expand_weight, weight_reduce_loss

__all__ = ["L1Loss", "SmoothL1Loss"]


def _check_pair(owner: str, pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{owner}: 'pred' {tuple(pred.shape)} and 'target' "
                         f"{tuple(target.shape)} must have the same shape")


class L1Loss(nn.Module):
    """``|pred - target|`` element-wise; ``forward(pred, target, weight=None,
    avg_factor=None)`` with ``weight`` [N] or broadcastable to ``pred``."""

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.reduction = check_reduction("L1Loss", reduction)
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        _check_pair("L1Loss", pred, target)
        if pred.numel() == 0:
            return pred.sum() * 0.0
        loss = (pred - target).abs()
        weight = expand_weight(weight, loss, "L1Loss")
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)


class SmoothL1Loss(nn.Module):
    """Huber-style smooth L1: ``0.5 x**2 / beta`` below ``beta``, ``|x| - 0.5
    beta`` above (torch's ``smooth_l1_loss``); same signature as L1Loss."""

    def __init__(self, beta: float = 1.0, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: 'beta' must be >= 0, got {beta}")
        self.beta = float(beta)
        self.reduction = check_reduction("SmoothL1Loss", reduction)
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        _check_pair("SmoothL1Loss", pred, target)
        if pred.numel() == 0:
            return pred.sum() * 0.0
        loss = F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta)
        weight = expand_weight(weight, loss, "SmoothL1Loss")
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)
