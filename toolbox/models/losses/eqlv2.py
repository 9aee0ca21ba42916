"""Equalization Loss v2 (Tan et al., "Equalization Loss v2: A New Gradient
Balance Approach for Long-tailed Object Detection", CVPR 2021).

Sigmoid cross-entropy whose positive and negative terms of class ``j`` are
re-weighted by how balanced that class's training has been so far::

    g_j = (accumulated positive gradient of j) / (accumulated negative gradient of j)
    f(x) = 1 / (1 + exp(-gamma (x - mu)))
    r_j = f(g_j)                  weight of the negative terms of class j
    q_j = 1 + alpha (1 - f(g_j))  weight of the positive terms of class j

The accumulated gradients are those of the re-weighted loss with respect to
the logits, ``|sigmoid(x) - y| * (q_j y + r_j (1 - y)) * sample_weight``,
summed over samples and over every training step (and over all processes
under DDP). They are kept in the ``pos_grad`` / ``neg_grad`` buffers, so they
are saved in checkpoints and restored on resume. See
``docs/long_tail_losses.md``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce
from torch import Tensor, nn

from toolbox.models.losses._long_tail import EmptyBuffersLoadMixin
from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss
from toolbox.models.losses.focal_loss import labels_to_one_hot

__all__ = ["EQLv2"]


class EQLv2(EmptyBuffersLoadMixin, nn.Module):
    """Gradient-balanced sigmoid cross-entropy.

    ``forward(pred [N, C] logits, target [N] long labels (C = background,
    all-zero targets), weight=None ([N] or broadcastable to [N, C]),
    avg_factor=None)``.

    Args:
        gamma, mu: slope and centre of the mapping ``f`` (paper: 12, 0.8).
        alpha: extra weight given to the positives of starved classes
            (paper: 4).
        num_classes: size of the gradient statistics; inferred from the first
            batch when omitted (a checkpoint then still loads into a fresh
            instance).
        reduction: ``'none'``, ``'mean'`` (over the N * C terms, or the sum
            divided by ``avg_factor`` when given) or ``'sum'``.
        loss_weight: scales the result.

    Statistics are gathered in ``forward`` from the detached probabilities
    (as the authors' code does), only in training mode with autograd
    enabled, so validation passes do not change them. A class with no
    accumulated gradient yet gets ``q_j = r_j = 1`` (plain BCE).
    """

    use_sigmoid = True

    def __init__(self, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0,
                 num_classes: int | None = None, reduction: str = "mean",
                 loss_weight: float = 1.0):
        super().__init__()
        if gamma <= 0:
            raise ValueError(f"EQLv2: 'gamma' must be > 0, got {gamma}")
        if alpha < 0:
            raise ValueError(f"EQLv2: 'alpha' must be >= 0, got {alpha}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"EQLv2: 'num_classes' must be a positive int or None, "
                             f"got {num_classes!r}")
        self.gamma = float(gamma)
        self.mu = float(mu)
        self.alpha = float(alpha)
        self.reduction = check_reduction("EQLv2", reduction)
        self.loss_weight = float(loss_weight)
        size = num_classes or 0
        self.register_buffer("pos_grad", torch.zeros(size))
        self.register_buffer("neg_grad", torch.zeros(size))

    @property
    def num_classes(self) -> int | None:
        return self.pos_grad.numel() or None

    def _ensure_size(self, num_classes: int) -> None:
        if self.pos_grad.numel() == 0:
            self.pos_grad.resize_(num_classes).zero_()
            self.neg_grad.resize_(num_classes).zero_()
        elif self.pos_grad.numel() != num_classes:
            raise ValueError(f"EQLv2: 'pred' has {num_classes} classes but the gradient "
                             f"statistics hold {self.pos_grad.numel()}")

    def map_ratio(self, ratio: Tensor) -> Tensor:
        """``f(x) = 1 / (1 + exp(-gamma (x - mu)))``."""
        return torch.sigmoid(self.gamma * (ratio - self.mu))

    def class_weights(self) -> tuple[Tensor, Tensor]:
        """(q [C], r [C]): the positive and negative weights from the state."""
        if self.pos_grad.numel() == 0:
            raise RuntimeError("EQLv2: the number of classes is not known yet; pass "
                               "'num_classes' or call the loss on a batch first")
        seen = (self.pos_grad + self.neg_grad) > 0
        ratio = self.pos_grad / (self.neg_grad + 1e-10)
        neg_w = torch.where(seen, self.map_ratio(ratio), torch.ones_like(ratio))
        pos_w = 1 + self.alpha * (1 - neg_w)
        return pos_w, neg_w

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.dim() != 2:
            raise ValueError(f"EQLv2: 'pred' must be logits [N, C], got {tuple(pred.shape)}")
        if torch.is_floating_point(target):
            raise ValueError("EQLv2: 'target' must be long class indices [N] (C = background)")
        self._ensure_size(pred.shape[1])
        one_hot = labels_to_one_hot(target, pred.shape[1], "EQLv2").to(pred.dtype)
        pos_w, neg_w = (w.to(pred.dtype) for w in self.class_weights())
        balance = pos_w[None, :] * one_hot + neg_w[None, :] * (1 - one_hot)
        loss = F.binary_cross_entropy_with_logits(pred, one_hot, reduction="none") * balance
        weight = expand_weight(weight, loss, "EQLv2")
        if self.training and torch.is_grad_enabled():
            full = balance if weight is None else balance * weight
            self._accumulate(pred.detach(), one_hot, full.detach())
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)

    @torch.no_grad()
    def _accumulate(self, logits: Tensor, one_hot: Tensor, weight: Tensor) -> None:
        """Add this batch's per-class positive / negative gradient magnitudes."""
        grad = (logits.sigmoid() - one_hot).abs() * weight
        pos = (grad * one_hot).sum(0).to(self.pos_grad.dtype)
        neg = (grad * (1 - one_hot)).sum(0).to(self.neg_grad.dtype)
        all_reduce(pos)  # sum over processes; a no-op without torch.distributed
        all_reduce(neg)
        self.pos_grad += pos
        self.neg_grad += neg

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, mu={self.mu}, alpha={self.alpha}, "
                f"num_classes={self.num_classes}, loss_weight={self.loss_weight}")
