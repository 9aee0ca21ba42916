"""Balanced Softmax (Ren et al., "Balanced Meta-Softmax for Long-Tailed
Visual Recognition", NeurIPS 2020).

Softmax cross-entropy on logits shifted by the log of each class's training
instance count::

    L = -log( n_y exp(z_y) / sum_j n_j exp(z_j) ) = CE(z + log n, y)

The shift exists only in the loss. At inference the raw logits go through a
plain softmax, which then estimates the class posterior under a balanced
(uniform) class prior: :meth:`BalancedSoftmax.predict_probs`.

Detection (``C + 1`` logits, the last one background): the number of
background samples is not a dataset statistic (it depends on the anchors and
the assigner), so background is not re-balanced. It is given the prior of an
average foreground class: the foreground shifts are ``log(n_j / mean_k n_k)``
and the background shift is 0. The foreground-versus-background balance is
then unchanged on average, and equal counts give exactly plain
cross-entropy. See ``docs/long_tail_losses.md``.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolbox.models.losses._long_tail import HOOK_HINT, EmptyBuffersLoadMixin, check_counts
from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss

__all__ = ["BalancedSoftmax"]


class BalancedSoftmax(EmptyBuffersLoadMixin, nn.Module):
    """Softmax cross-entropy with the logits shifted by ``log n_j`` in training.

    ``forward(pred, target, weight=None, avg_factor=None)`` where ``pred`` is
    logits [N, C] (classification) or [N, C + 1] (detection, last column
    background), ``target`` long [N] in ``[0, pred.shape[1])``, ``weight``
    [N], and ``reduction='mean'`` averages over N (or divides the sum by
    ``avg_factor`` when given).

    A class with no training instance would need ``log 0 = -inf``; its count
    is raised to 1 (the smallest observed count) and a warning names it.
    The counts come from the training set through
    :meth:`set_class_frequencies` and live in the ``class_counts`` buffer
    (saved in checkpoints).
    """

    use_sigmoid = False  # heads give it C + 1 logits and score with a softmax
    needs_class_frequencies = True

    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.reduction = check_reduction("BalancedSoftmax", reduction)
        self.loss_weight = float(loss_weight)
        self.register_buffer("class_counts", torch.zeros(0))

    def set_class_frequencies(self, instance_counts: Sequence[int],
                              image_counts: Sequence[int] | None = None,
                              num_images: int | None = None) -> None:
        """Store the per-class training instance counts ``n_j``."""
        counts = check_counts("BalancedSoftmax", "instance_counts", instance_counts)
        if counts.sum() == 0:
            raise ValueError("BalancedSoftmax: every class has 0 training instances; "
                             "the training set has no (non-ignored) annotation")
        empty = torch.nonzero(counts == 0).flatten().tolist()
        if empty:
            warnings.warn(f"BalancedSoftmax: classes {empty} have no training instance; "
                          f"their count is raised to 1 so that log(n_j) stays finite",
                          stacklevel=2)
        counts = counts.clamp(min=1).to(torch.float32)
        self.class_counts.resize_(counts.shape).copy_(counts)

    def logit_shift(self, num_logits: int) -> Tensor:
        """The shift added to the logits in training, [num_logits].

        ``log(n_j / mean n)`` per class, followed by 0 for background when
        ``num_logits == C + 1``.
        """
        counts = self.class_counts
        if counts.numel() == 0:
            raise RuntimeError(f"BalancedSoftmax: class frequencies were never set; {HOOK_HINT}")
        num_classes = counts.numel()
        if num_logits not in (num_classes, num_classes + 1):
            raise ValueError(f"BalancedSoftmax: 'pred' has {num_logits} logits; expected "
                             f"{num_classes} (classes) or {num_classes + 1} (classes + "
                             f"background) for the {num_classes} class counts")
        counts = counts.double()  # the shift is exact for float64 logits too
        shift = counts.log() - counts.mean().log()
        if num_logits == num_classes + 1:
            shift = torch.cat([shift, shift.new_zeros(1)])
        return shift

    @staticmethod
    def predict_probs(logits: Tensor) -> Tensor:
        """Calibrated (balanced-prior) probabilities: plain softmax of the raw
        logits, without the training shift."""
        return logits.softmax(dim=-1)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.dim() != 2:
            raise ValueError(f"BalancedSoftmax: 'pred' must be logits [N, K], "
                             f"got {tuple(pred.shape)}")
        if torch.is_floating_point(target) or target.shape != pred.shape[:1]:
            raise ValueError(f"BalancedSoftmax: 'target' must be long class indices of shape "
                             f"{tuple(pred.shape[:1])}, got {target.dtype} {tuple(target.shape)}")
        shift = self.logit_shift(pred.shape[1])
        if target.numel() and (target.min() < 0 or target.max() >= pred.shape[1]):
            raise ValueError(f"BalancedSoftmax: 'target' must lie in [0, {pred.shape[1]}), got "
                             f"values in [{int(target.min())}, {int(target.max())}]")
        loss = F.cross_entropy(pred + shift.to(pred.dtype), target.long(), reduction="none")
        weight = expand_weight(weight, loss, "BalancedSoftmax")
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}"
