"""Smooth L1 (Huber-style) regression loss."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from toolbox.models.losses.l1_loss import L1Loss

__all__ = ["SmoothL1Loss"]


class SmoothL1Loss(L1Loss):
    """``0.5 x**2 / beta`` below ``beta``, ``|x| - 0.5 beta`` above (torch's
    ``smooth_l1_loss``); same signature as :class:`L1Loss`."""

    def __init__(self, beta: float = 1.0, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__(reduction=reduction, loss_weight=loss_weight)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: 'beta' must be >= 0, got {beta}")
        self.beta = float(beta)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta)
