"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection")."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss

__all__ = ["FocalLoss"]


def labels_to_one_hot(labels: Tensor, num_classes: int, owner: str) -> Tensor:
    """Long labels [N] in ``[0, num_classes]`` (``num_classes`` = background)
    to a float one-hot [N, num_classes] whose background rows are all zero."""
    if labels.dim() != 1:
        raise ValueError(f"{owner}: integer 'target' must be [N] class indices, "
                         f"got shape {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(f"{owner}: 'target' labels must lie in [0, {num_classes}] "
                         f"({num_classes} = background), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return F.one_hot(labels.long(), num_classes + 1)[:, :num_classes]


class FocalLoss(nn.Module):
    """``-alpha_t (1 - p_t) ** gamma log(p_t)`` on each (sample, class) logit.

    ``forward(pred [N, C], target, weight=None, avg_factor=None)`` where
    ``target`` is either long class indices [N] with ``C`` meaning
    background, or a float (one-hot or soft) [N, C]. ``weight`` is [N] (per
    sample) or broadcastable to [N, C]. Detection heads pass the number of
    positives as ``avg_factor``. ``alpha < 0`` disables the alpha balancing.
    """

    use_sigmoid = True

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, reduction: str = "mean",
                 loss_weight: float = 1.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"FocalLoss: 'gamma' must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.reduction = check_reduction("FocalLoss", reduction)
        self.loss_weight = float(loss_weight)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.dim() != 2:
            raise ValueError(f"FocalLoss: 'pred' must be logits [N, C], got {tuple(pred.shape)}")
        if not torch.is_floating_point(target):
            target = labels_to_one_hot(target, pred.shape[1], "FocalLoss")
        elif target.shape != pred.shape:
            raise ValueError(f"FocalLoss: float 'target' must match 'pred' {tuple(pred.shape)}, "
                             f"got {tuple(target.shape)}")
        loss = sigmoid_focal_loss(pred, target.to(pred.dtype), alpha=self.alpha,
                                  gamma=self.gamma, reduction="none")
        weight = expand_weight(weight, loss, "FocalLoss")
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, loss_weight={self.loss_weight}"
