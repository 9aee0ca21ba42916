"""Cross-entropy: softmax over classes, or independent sigmoids per class."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolbox.models.losses.reduction import check_reduction, expand_weight, weight_reduce_loss
from toolbox.models.losses.focal_loss import labels_to_one_hot

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(nn.Module):
    """Softmax or sigmoid cross-entropy with class weights and ignored labels.

    ``forward(pred, target, weight=None, avg_factor=None)``:

    * softmax (default): ``pred`` [N, C, *], ``target`` long [N, *] (dense
      targets such as segmentation maps work too);
    * ``use_sigmoid=True``: ``pred`` [N, C], ``target`` long [N] with ``C``
      meaning background (all classes negative), or a float [N, C].

    Targets equal to ``ignore_index`` contribute nothing. ``class_weight``
    ([C]) scales each class's term. Without ``avg_factor``, ``'mean'``
    divides by the number of non-ignored terms (not by the sum of class
    weights, unlike ``torch.nn.functional.cross_entropy``).
    """

    def __init__(self, use_sigmoid: bool = False, class_weight: Sequence[float] | None = None,
                 ignore_index: int = -100, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.use_sigmoid = bool(use_sigmoid)
        self.ignore_index = int(ignore_index)
        self.reduction = check_reduction("CrossEntropyLoss", reduction)
        self.loss_weight = float(loss_weight)
        if class_weight is not None:
            class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
            if class_weight.dim() != 1:
                raise ValueError("CrossEntropyLoss: 'class_weight' must be a 1-D sequence, got "
                                 f"shape {tuple(class_weight.shape)}")
        self.register_buffer("class_weight", class_weight, persistent=False)

    def _check_class_weight(self, num_classes: int) -> Tensor | None:
        if self.class_weight is not None and self.class_weight.numel() != num_classes:
            raise ValueError(f"CrossEntropyLoss: 'class_weight' has {self.class_weight.numel()} "
                             f"entries for {num_classes} predicted classes")
        return self.class_weight

    def _softmax_terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        if torch.is_floating_point(target) or target.shape != pred.shape[:1] + pred.shape[2:]:
            raise ValueError("CrossEntropyLoss: softmax mode needs long 'target' of shape "
                             f"{tuple(pred.shape[:1] + pred.shape[2:])} for 'pred' "
                             f"{tuple(pred.shape)}, got {target.dtype} {tuple(target.shape)}")
        valid = target != self.ignore_index
        if valid.any():
            bad = target[valid]
            if bad.min() < 0 or bad.max() >= pred.shape[1]:
                raise ValueError(f"CrossEntropyLoss: 'target' must lie in [0, {pred.shape[1]}) "
                                 f"or equal ignore_index={self.ignore_index}")
        weight = self._check_class_weight(pred.shape[1])
        loss = F.cross_entropy(pred, target.long(), weight=weight, reduction="none",
                               ignore_index=self.ignore_index)
        return loss, valid

    def _sigmoid_terms(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        if pred.dim() != 2:
            raise ValueError(f"CrossEntropyLoss: sigmoid mode needs 'pred' [N, C], got "
                             f"{tuple(pred.shape)}")
        if torch.is_floating_point(target):
            if target.shape != pred.shape:
                raise ValueError(f"CrossEntropyLoss: float 'target' must match 'pred' "
                                 f"{tuple(pred.shape)}, got {tuple(target.shape)}")
            valid = torch.ones_like(pred, dtype=torch.bool)
        else:
            row_valid = target != self.ignore_index
            safe = torch.where(row_valid, target, torch.full_like(target, pred.shape[1]))
            target = labels_to_one_hot(safe, pred.shape[1], "CrossEntropyLoss")
            valid = row_valid[:, None].expand_as(pred)
        loss = F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), reduction="none")
        weight = self._check_class_weight(pred.shape[1])
        if weight is not None:
            loss = loss * weight.to(loss.dtype)
        return loss * valid, valid

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if self.use_sigmoid:
            loss, valid = self._sigmoid_terms(pred, target)
        else:
            loss, valid = self._softmax_terms(pred, target)
        weight = expand_weight(weight, loss, "CrossEntropyLoss")
        if self.reduction == "mean" and avg_factor is None:
            if weight is not None:
                loss = loss * weight
            reduced = loss.sum() / valid.sum().clamp(min=1)
        else:
            reduced = weight_reduce_loss(loss, weight, self.reduction, avg_factor)
        return self.loss_weight * reduced
