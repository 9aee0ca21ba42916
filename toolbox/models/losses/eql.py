"""Equalization Loss (Tan et al., "Equalization Loss for Long-Tailed Object
Recognition", CVPR 2020).

Sigmoid cross-entropy over ``C`` classes where, for a foreground sample, the
negative terms of *tail* classes are dropped, so that the many positives of
frequent classes stop discouraging the rare ones::

    L = - sum_j w_ij [y_ij log p_ij + (1 - y_ij) log(1 - p_ij)]
    w_ij = 1 - E(r_i) T_lambda(f_j) (1 - y_ij)

``E(r_i)`` is 1 for a foreground sample (label < C) and 0 for background;
``T_lambda(f_j)`` is 1 when ``f_j < lambda`` (a tail class); ``f_j`` is the
fraction of training images that contain class ``j``. See
``docs/long_tail_losses.md``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolbox.models.losses._long_tail import HOOK_HINT, EmptyBuffersLoadMixin, check_counts
from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss
from toolbox.models.losses.focal_loss import labels_to_one_hot

__all__ = ["EQL"]


class EQL(EmptyBuffersLoadMixin, nn.Module):
    """Sigmoid Equalization Loss.

    ``forward(pred [N, C] logits, target [N] long labels (C = background),
    weight=None ([N] or broadcastable to [N, C]), avg_factor=None)``.

    Args:
        tail_threshold: the paper's lambda. A class with image frequency
            ``f_j < tail_threshold`` is a tail class. The default 1.76e-3 is
            the paper's choice for LVIS v0.5 (~57k images); small datasets
            need a much larger value (about 0.1 marks the two rarest classes
            of the synthetic ``long_tail=dict(imbalance=100)`` set).
        reduction: ``'none'``, ``'mean'`` (over the N * C terms, or the sum
            divided by ``avg_factor`` when given) or ``'sum'``.
        loss_weight: scales the result.

    The per-class image frequencies come from the training set through
    :meth:`set_class_frequencies` and live in the ``image_frequency`` buffer
    (saved in checkpoints).
    """

    use_sigmoid = True
    needs_class_frequencies = True

    def __init__(self, tail_threshold: float = 1.76e-3, reduction: str = "mean",
                 loss_weight: float = 1.0):
        super().__init__()
        if not 0.0 <= float(tail_threshold) <= 1.0:
            raise ValueError(f"EQL: 'tail_threshold' is a fraction of images in [0, 1], "
                             f"got {tail_threshold}")
        self.tail_threshold = float(tail_threshold)
        self.reduction = check_reduction("EQL", reduction)
        self.loss_weight = float(loss_weight)
        self.register_buffer("image_frequency", torch.zeros(0))

    def set_class_frequencies(self, instance_counts: Sequence[int], image_counts: Sequence[int],
                              num_images: int | None = None) -> None:
        """Store ``f_j = image_counts[j] / num_images`` (the paper's frequency).

        ``num_images`` is the number of training images (the official code
        counts the images with at least one annotation). A class with no
        training image gets ``f_j = 0`` and is therefore a tail class.
        """
        counts = check_counts("EQL", "image_counts", image_counts)
        check_counts("EQL", "instance_counts", instance_counts, len(counts))
        if num_images is None:
            raise ValueError("EQL: set_class_frequencies needs 'num_images' (the number of "
                             "training images) to compute f_j = image_counts[j] / num_images; "
                             "the engine's ClassFrequencyHook must pass it")
        if int(num_images) < 1 or int(num_images) < counts.max():
            raise ValueError(f"EQL: 'num_images' must be >= 1 and >= every image count "
                             f"(max {int(counts.max())}), got {num_images}")
        freq = (counts / int(num_images)).to(torch.float32)
        self.image_frequency.resize_(freq.shape).copy_(freq)

    def tail_classes(self) -> Tensor:
        """Bool [C]: ``T_lambda(f_j)``, the classes whose negatives are dropped."""
        if self.image_frequency.numel() == 0:
            raise RuntimeError(f"EQL: class frequencies were never set; {HOOK_HINT}")
        return self.image_frequency < self.tail_threshold

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if pred.dim() != 2:
            raise ValueError(f"EQL: 'pred' must be logits [N, C], got {tuple(pred.shape)}")
        if torch.is_floating_point(target):
            raise ValueError("EQL: 'target' must be long class indices [N] (C = background): "
                             "foreground and background samples are told apart by label")
        tail = self.tail_classes()
        num_classes = pred.shape[1]
        if tail.numel() != num_classes:
            raise ValueError(f"EQL: 'pred' has {num_classes} classes but the class frequencies "
                             f"have {tail.numel()}")
        one_hot = labels_to_one_hot(target, num_classes, "EQL").to(pred.dtype)
        foreground = (target < num_classes).to(pred.dtype)[:, None]          # E(r_i)
        eql_weight = 1 - foreground * tail.to(pred.dtype)[None, :] * (1 - one_hot)
        loss = F.binary_cross_entropy_with_logits(pred, one_hot, reduction="none") * eql_weight
        weight = expand_weight(weight, loss, "EQL")
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return f"tail_threshold={self.tail_threshold}, loss_weight={self.loss_weight}"
