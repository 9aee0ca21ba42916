"""Random sampling of positive and negative priors (Faster R-CNN's RPN and
RoI heads).

After assignment (``AssignResult.gt_inds``: ``-1`` ignored, ``0`` negative,
``k > 0`` positive), the sampler draws at most ``num * pos_fraction``
positives uniformly at random and fills the rest of the ``num`` slots with
random negatives. Ignored priors are never drawn.
"""
from __future__ import annotations

import torch
from torch import Tensor


class RandomSampler:
    """Draw a fixed-size, class-balanced minibatch of priors.

    Args:
        num: total number of priors to sample per image (e.g. 256 for the
            RPN, 512 for the RoI head).
        pos_fraction: the largest share of ``num`` given to positives (0.5
            for the RPN, 0.25 for the RoI head).
        neg_pos_ub: at most ``neg_pos_ub`` negatives per positive (counting
            at least one positive); negative means no bound.
        always_permute: draw a random permutation of the positives and of
            the negatives even when all of them are kept (the kept ones then
            come in random order), as torchvision's
            ``BalancedPositiveNegativeSampler`` does: with the same seed both
            then draw the same priors.
    """

    def __init__(self, num: int, pos_fraction: float, neg_pos_ub: float = -1,
                 always_permute: bool = False):
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"RandomSampler: 'num' must be a positive int, got {num!r}")
        if not 0.0 <= pos_fraction <= 1.0:
            raise ValueError(f"RandomSampler: 'pos_fraction' must be in [0, 1], got {pos_fraction}")
        self.num = num
        self.pos_fraction = float(pos_fraction)
        self.neg_pos_ub = float(neg_pos_ub)
        self.always_permute = bool(always_permute)

    def _draw(self, candidates: Tensor, count: int, generator) -> Tensor:
        if candidates.numel() <= count and not self.always_permute:
            return candidates
        order = torch.randperm(candidates.numel(), generator=generator,
                               device="cpu").to(candidates.device)
        return candidates[order[:count]]

    def sample(self, gt_inds: Tensor, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor]:
        """Indices ``(pos_inds, neg_inds)`` into the priors of one image.

        ``gt_inds`` is the assigner's long Tensor[N] (``-1`` ignored, ``0``
        negative, ``k > 0`` positive).
        """
        if not isinstance(gt_inds, Tensor) or gt_inds.dim() != 1:
            shape = tuple(gt_inds.shape) if isinstance(gt_inds, Tensor) else type(gt_inds).__name__
            raise ValueError(f"RandomSampler.sample: 'gt_inds' must be a 1-D Tensor, got {shape}")
        positives = torch.nonzero(gt_inds > 0).flatten()
        negatives = torch.nonzero(gt_inds == 0).flatten()
        pos_inds = self._draw(positives, int(self.num * self.pos_fraction), generator)
        num_neg = self.num - pos_inds.numel()
        if self.neg_pos_ub >= 0:
            num_neg = min(num_neg, int(self.neg_pos_ub * max(1, pos_inds.numel())))
        neg_inds = self._draw(negatives, num_neg, generator)
        return pos_inds, neg_inds

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num={self.num}, pos_fraction={self.pos_fraction}, "
                f"neg_pos_ub={self.neg_pos_ub})")
