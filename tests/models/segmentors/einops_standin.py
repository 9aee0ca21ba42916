"""A stand-in for ``einops.layers.torch.Rearrange``, for MONAI's reference
networks when einops is not installed (MONAI imports it optionally and its
attention and perceptron patch embedding need it).

It interprets a pattern generically (named axes, parenthesised groups,
lengths given as keyword arguments, at most one unknown length per input
group), independently of the toolbox's own reshapes, so it can stand in for
the reference. With einops installed, the real one is used instead.
"""
from __future__ import annotations

import math

from torch import Tensor, nn


def _parse(side: str) -> list[list[str]]:
    groups: list[list[str]] = []
    current = None
    for token in side.replace("(", " ( ").replace(")", " ) ").split():
        if token == "(":
            current = []
        elif token == ")":
            groups.append(current)
            current = None
        elif current is not None:
            current.append(token)
        else:
            groups.append([token])
    return groups


class Rearrange(nn.Module):
    """``Rearrange('b h (qkv l d) -> qkv b l h d', qkv=3, l=12)`` and the like."""

    def __init__(self, pattern: str, **lengths: int):
        super().__init__()
        left, right = pattern.split("->")
        self.source, self.target, self.lengths = _parse(left), _parse(right), lengths

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != len(self.source):
            raise ValueError(f"Rearrange: pattern expects {len(self.source)} dims, got {x.dim()}")
        lengths = dict(self.lengths)
        for group, size in zip(self.source, x.shape):
            unknown = [a for a in group if a not in lengths]
            known = math.prod(lengths[a] for a in group if a in lengths)
            if len(unknown) > 1 or (not unknown and known != size):
                raise ValueError(f"Rearrange: cannot split axis of size {size} into {group}")
            if unknown:
                lengths[unknown[0]] = size // known
        names = [a for group in self.source for a in group]
        order = [a for group in self.target for a in group]
        x = x.reshape([lengths[a] for a in names]).permute([names.index(a) for a in order])
        return x.reshape([math.prod(lengths[a] for a in group) for group in self.target])


def patch_monai() -> bool:
    """Give MONAI's attention and patch-embedding modules this Rearrange if
    einops is missing; returns whether the stand-in was installed."""
    try:
        import einops  # noqa: F401
        return False
    except ImportError:
        pass
    from monai.networks.blocks import patchembedding, selfattention
    selfattention.Rearrange = Rearrange
    patchembedding.Rearrange = Rearrange
    return True
