"""Shared reduction of element-wise losses: weights, ``avg_factor``, reduction.

Every toolbox loss has ``forward(pred, target, weight=None, avg_factor=None)``:

* ``weight`` multiplies the element-wise loss (broadcast from the right
  after the loss's own reshaping);
* ``reduction='mean'`` divides the weighted sum by ``avg_factor`` when one
  is given (e.g. the number of positive anchors), else takes the plain mean;
* ``reduction='sum'`` sums (``avg_factor`` is then an error);
* ``reduction='none'`` returns the weighted element-wise loss.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["REDUCTIONS", "check_reduction", "expand_weight", "weight_reduce_loss"]

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(owner: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{owner}: 'reduction' must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def weight_reduce_loss(loss: Tensor, weight: Tensor | None = None, reduction: str = "mean",
                       avg_factor: float | Tensor | None = None) -> Tensor:
    """Apply ``weight`` then reduce ``loss`` as described in the module docs."""
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if avg_factor is None:
        return loss.mean() if reduction == "mean" else loss.sum()
    if reduction == "sum":
        raise ValueError("'avg_factor' cannot be used with reduction='sum'")
    return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)


def expand_weight(weight: Tensor | None, like: Tensor, owner: str) -> Tensor | None:
    """Give a per-sample weight [N] a trailing axis so it broadcasts over
    ``like`` [N, K]; other shapes must already broadcast."""
    if weight is None:
        return None
    if weight.dim() == 1 and like.dim() == 2:
        weight = weight[:, None]
    try:
        torch.broadcast_shapes(weight.shape, like.shape)
    except RuntimeError:
        raise ValueError(f"{owner}: 'weight' of shape {tuple(weight.shape)} does not "
                         f"broadcast to the loss of shape {tuple(like.shape)}") from None
    return weight.to(like.dtype)
