"""CharbonnierLoss: sqrt((pred - target)^2 + eps^2) - eps, a smooth L1."""
import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """A regression loss (``loss_bbox`` of a head): ``forward(pred, target,
    weight=None, avg_factor=None)`` on ``[N, 4]`` boxes or deltas; ``weight``
    per sample ``[N]`` or per element; the sum is divided by ``avg_factor``
    when given (the number of positives), else averaged."""

    def __init__(self, eps: float = 1e-3, loss_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.eps, self.loss_weight, self.reduction = eps, loss_weight, reduction

    def forward(self, pred, target, weight=None, avg_factor=None):
        loss = torch.sqrt((pred - target) ** 2 + self.eps ** 2) - self.eps
        if weight is not None:
            if weight.dim() == 1 and loss.dim() > 1:  # one weight per sample (box)
                weight = weight.reshape(-1, *([1] * (loss.dim() - 1)))
            loss = loss * weight
        if self.reduction == "sum":
            loss = loss.sum()
        elif self.reduction == "mean":
            loss = loss.sum() / avg_factor if avg_factor else loss.mean()
        return self.loss_weight * loss
