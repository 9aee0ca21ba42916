"""CharbonnierLoss: sqrt((pred - target)^2 + eps^2) - eps, a smooth L1."""
import torch
from torch import nn

from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss


class CharbonnierLoss(nn.Module):
    """A regression loss (``loss_bbox`` of a head): ``forward(pred, target,
    weight=None, avg_factor=None)`` on ``[N, 4]`` boxes or deltas; ``weight``
    per sample ``[N]`` or per element; the sum is divided by ``avg_factor``
    when given (the number of positives), else averaged."""

    def __init__(self, eps: float = 1e-3, loss_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.eps, self.loss_weight = eps, loss_weight
        self.reduction = check_reduction("CharbonnierLoss", reduction)

    def forward(self, pred, target, weight=None, avg_factor=None):
        loss = torch.sqrt((pred - target) ** 2 + self.eps ** 2) - self.eps
        weight = expand_weight(weight, loss, "CharbonnierLoss")  # [N] -> one per box
        # the toolbox's shared reduction: weight, then avg_factor or the mean
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)
