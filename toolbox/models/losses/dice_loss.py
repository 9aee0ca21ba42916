"""Soft Dice loss over the softmax of per-pixel (per-voxel) logits.

For each image (or the whole batch with ``batch=True``) and class ``c``::

    dice_c = 1 - (2 sum(p_c g_c) + smooth_nr) / (sum(p_c^k) + sum(g_c^k) + smooth_dr)

with ``p = softmax(logits)``, ``g`` the one-hot labels and ``k = 2`` when
``squared_pred`` else 1, summed over the non-ignored pixels only; the loss is
the mean over images and classes (MONAI's ``DiceLoss(to_onehot_y=True,
softmax=True)`` convention, smoothing defaults included). With
``class_weight`` each class's ``dice_c`` is multiplied by its weight before
that (unnormalised) mean, as MONAI's ``weight``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["DiceLoss"]


def check_seg_inputs(owner: str, pred: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    """Validate ``pred`` [B, C, *S] and ``target`` [B, *S]; return the valid mask."""
    if not isinstance(pred, Tensor) or pred.dim() < 3 or not torch.is_floating_point(pred):
        raise ValueError(f"{owner}: 'pred' must be float logits [B, C, *spatial], got "
                         f"{tuple(pred.shape) if isinstance(pred, Tensor) else type(pred)}")
    if not isinstance(target, Tensor) or torch.is_floating_point(target) or \
            tuple(target.shape) != tuple(pred.shape[:1] + pred.shape[2:]):
        got = f"{target.dtype} {tuple(target.shape)}" if isinstance(target, Tensor) else \
            type(target).__name__
        raise ValueError(f"{owner}: 'target' must be integer labels of shape "
                         f"{tuple(pred.shape[:1] + pred.shape[2:])} for 'pred' "
                         f"{tuple(pred.shape)}, got {got}")
    valid = target != ignore_index
    if valid.any():
        labels = target[valid]
        if labels.min() < 0 or labels.max() >= pred.shape[1]:
            raise ValueError(f"{owner}: 'target' must lie in [0, {pred.shape[1]}) or equal "
                             f"ignore_index={ignore_index}, got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
    return valid


class DiceLoss(nn.Module):
    """Softmax Dice loss; pixels labelled ``ignore_index`` count nowhere.

    Args:
        include_background: keep class 0 in the mean (MONAI's default: True).
        squared_pred: square ``p`` and ``g`` in the denominator (V-Net form).
        smooth_nr, smooth_dr: added to the numerator / denominator.
        batch: sum over the whole batch before the ratio (one Dice per class)
            instead of one per image.
        class_weight: optional weight of every class's Dice loss ([C], one per
            class, background included; its entry is dropped with
            ``include_background=False``, whereas MONAI's ``DiceLoss(weight)``
            then takes C - 1 entries). The loss stays the plain mean over
            images and classes of ``w_c * dice_c``.
        ignore_index: label of pixels left out (255).
        loss_weight: multiplies the result.

    ``forward(pred [B, C, *S] logits, target [B, *S] long) -> scalar``.
    """

    def __init__(self, include_background: bool = True, squared_pred: bool = False,
                 smooth_nr: float = 1e-5, smooth_dr: float = 1e-5, batch: bool = False,
                 ignore_index: int = IGNORE_INDEX, loss_weight: float = 1.0,
                 class_weight: Sequence[float] | None = None):
        super().__init__()
        if smooth_nr < 0 or smooth_dr < 0:
            raise ValueError(f"DiceLoss: smooth_nr and smooth_dr must be >= 0, got "
                             f"{smooth_nr}, {smooth_dr}")
        if class_weight is not None:
            class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
            if class_weight.dim() != 1 or class_weight.numel() == 0 or class_weight.min() < 0:
                raise ValueError("DiceLoss: 'class_weight' must be a 1-D sequence of weights "
                                 f">= 0, one per class, got {class_weight.tolist()}")
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.include_background = bool(include_background)
        self.squared_pred = bool(squared_pred)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = bool(batch)
        self.ignore_index = int(ignore_index)
        self.loss_weight = float(loss_weight)

    def per_class(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
        """The Dice loss of every (image, class): ``[B, C]`` (``[C]`` with ``batch``)."""
        if valid is None:
            valid = check_seg_inputs("DiceLoss", pred, target, self.ignore_index)
        num_classes = pred.shape[1]
        mask = valid.unsqueeze(1).to(pred.dtype)
        probs = pred.softmax(dim=1) * mask
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        one_hot = F.one_hot(safe, num_classes).movedim(-1, 1).to(pred.dtype) * mask
        if not self.include_background:
            if num_classes == 1:
                raise ValueError("DiceLoss: include_background=False needs more than one class")
            probs, one_hot = probs[:, 1:], one_hot[:, 1:]
        axes = tuple(range(2, pred.dim()))
        if self.batch:
            axes = (0,) + axes
        intersection = (probs * one_hot).sum(axes)
        if self.squared_pred:
            denominator = (probs ** 2).sum(axes) + (one_hot ** 2).sum(axes)
        else:
            denominator = probs.sum(axes) + one_hot.sum(axes)
        return 1.0 - (2.0 * intersection + self.smooth_nr) / (denominator + self.smooth_dr)

    def reduce(self, losses: Tensor) -> Tensor:
        """The mean of :meth:`per_class` losses ``[B, C']`` or ``[C']``, each class
        multiplied by its ``class_weight`` first (``C'`` = C, or C - 1 without
        background)."""
        weight = self.class_weight
        if weight is None:
            return losses.mean()
        num_classes = losses.shape[-1] + (0 if self.include_background else 1)
        if weight.numel() != num_classes:
            raise ValueError(f"DiceLoss: 'class_weight' has {weight.numel()} entries for "
                             f"{num_classes} predicted classes (background included)")
        if not self.include_background:
            weight = weight[1:]
        return (losses * weight.to(losses.dtype)).mean()

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * self.reduce(self.per_class(pred, target))

    def extra_repr(self) -> str:
        return (f"include_background={self.include_background}, squared_pred="
                f"{self.squared_pred}, batch={self.batch}, ignore_index={self.ignore_index}")
