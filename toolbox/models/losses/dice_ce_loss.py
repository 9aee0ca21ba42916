"""Dice + cross-entropy, the loss of UNETR (Hatamizadeh et al., WACV 2022)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolbox.models.losses.dice_loss import DiceLoss, check_seg_inputs
from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["DiceCELoss"]


class DiceCELoss(nn.Module):
    """``lambda_dice * Dice(softmax) + lambda_ce * CE``, ignored pixels left out of both.

    The cross-entropy is the mean over non-ignored pixels (0 when every
    pixel is ignored). With no ignored pixel this equals MONAI's
    ``DiceCELoss(to_onehot_y=True, softmax=True)`` for the same Dice options;
    UNETR's training used ``squared_pred=True, smooth_nr=0, smooth_dr=1e-6``.

    Args:
        lambda_dice, lambda_ce: weights of the two terms (>= 0).
        class_weight: optional per-class weights of the cross-entropy ([C]).
        dice_class_weight: optional per-class weights of the Dice term ([C],
            background included; see ``DiceLoss(class_weight)``). MONAI's
            ``DiceCELoss(weight=w)`` is ``class_weight=w, dice_class_weight=w``.
        include_background, squared_pred, smooth_nr, smooth_dr, batch: see
            :class:`~toolbox.models.losses.dice_loss.DiceLoss`.
        ignore_index: label of pixels left out (255).
        loss_weight: multiplies the result.

    ``forward(pred [B, C, *S] logits, target [B, *S] long) -> scalar``.
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 class_weight: Sequence[float] | None = None, include_background: bool = True,
                 squared_pred: bool = False, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                 batch: bool = False, ignore_index: int = IGNORE_INDEX, loss_weight: float = 1.0,
                 dice_class_weight: Sequence[float] | None = None):
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"DiceCELoss: lambda_dice and lambda_ce must be >= 0, got "
                             f"{lambda_dice}, {lambda_ce}")
        self.lambda_dice = float(lambda_dice)
        self.lambda_ce = float(lambda_ce)
        self.ignore_index = int(ignore_index)
        self.loss_weight = float(loss_weight)
        self.dice = DiceLoss(include_background=include_background, squared_pred=squared_pred,
                             smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch,
                             ignore_index=ignore_index, class_weight=dice_class_weight)
        if class_weight is not None:
            class_weight = torch.as_tensor(class_weight, dtype=torch.float32)
            if class_weight.dim() != 1:
                raise ValueError("DiceCELoss: 'class_weight' must be a 1-D sequence, got shape "
                                 f"{tuple(class_weight.shape)}")
        self.register_buffer("class_weight", class_weight, persistent=False)

    def cross_entropy(self, pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """Mean cross-entropy over the non-ignored pixels."""
        weight = self.class_weight
        if weight is not None and weight.numel() != pred.shape[1]:
            raise ValueError(f"DiceCELoss: 'class_weight' has {weight.numel()} entries for "
                             f"{pred.shape[1]} predicted classes")
        if not valid.any():
            return pred.sum() * 0.0
        weight = None if weight is None else weight.to(pred.dtype)
        return F.cross_entropy(pred, target.long(), weight=weight,
                               ignore_index=self.ignore_index, reduction="mean")

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        valid = check_seg_inputs("DiceCELoss", pred, target, self.ignore_index)
        dice = self.dice.reduce(self.dice.per_class(pred, target, valid))
        ce = self.cross_entropy(pred, target, valid)
        return self.loss_weight * (self.lambda_dice * dice + self.lambda_ce * ce)

    def extra_repr(self) -> str:
        return f"lambda_dice={self.lambda_dice}, lambda_ce={self.lambda_ce}"
