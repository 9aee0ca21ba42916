"""Online hard negative mining (SSD, Liu et al. 2016; RefineDet, Zhang et al. 2018).

Dense detectors see far more background anchors than objects. SSD and
RefineDet keep, per image, only the negatives with the highest
classification loss, at most ``neg_pos_ratio`` times as many as that
image's positives (3:1 in both papers); the other negatives do not count.
"""
from __future__ import annotations

import torch
from torch import Tensor


def hard_negative_mining(loss: Tensor, pos: Tensor, neg_candidates: Tensor | None = None,
                         neg_pos_ratio: float = 3.0) -> Tensor:
    """Select the hardest negatives of each image.

    Args:
        loss: [B, N] (or [N] for one image) per-anchor classification loss
            against the background label; only its order matters (pass it
            detached).
        pos: bool, same shape: the positive anchors.
        neg_candidates: bool, same shape: anchors allowed to be negatives
            (default: every anchor that is not positive). Positives are never
            selected, even if marked here.
        neg_pos_ratio: negatives kept per positive, per image (3 in SSD and
            RefineDet). An image without positives keeps no negatives.

    Returns:
        bool mask of the selected negatives, shaped like ``loss``: in each row
        the ``min(floor(neg_pos_ratio * num_pos), num_candidates)`` candidates
        with the largest loss (ties: the lower anchor index first).
    """
    if not isinstance(loss, Tensor) or loss.dim() not in (1, 2):
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"hard_negative_mining: 'loss' must be a Tensor [B, N] or [N], got {shape}")
    if pos.shape != loss.shape or pos.dtype != torch.bool:
        raise ValueError(f"hard_negative_mining: 'pos' must be a bool Tensor of shape "
                         f"{tuple(loss.shape)}, got {pos.dtype} {tuple(pos.shape)}")
    if neg_candidates is None:
        neg_candidates = ~pos
    elif neg_candidates.shape != loss.shape or neg_candidates.dtype != torch.bool:
        raise ValueError(f"hard_negative_mining: 'neg_candidates' must be a bool Tensor of shape "
                         f"{tuple(loss.shape)}, got {neg_candidates.dtype} "
                         f"{tuple(neg_candidates.shape)}")
    if not neg_pos_ratio >= 0:
        raise ValueError(f"hard_negative_mining: 'neg_pos_ratio' must be >= 0, got {neg_pos_ratio}")
    single = loss.dim() == 1
    if single:
        loss, pos, neg_candidates = loss[None], pos[None], neg_candidates[None]
    candidates = neg_candidates & ~pos
    ranked = loss.detach().float().masked_fill(~candidates, float("-inf"))
    order = ranked.sort(dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    num_neg = torch.floor(pos.sum(dim=1, keepdim=True) * float(neg_pos_ratio)).long()
    num_neg = torch.minimum(num_neg, candidates.sum(dim=1, keepdim=True))
    selected = (rank < num_neg) & candidates
    return selected[0] if single else selected
