"""Random flips of a volume along each spatial axis."""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

__all__ = ["RandomFlipVolume"]


class RandomFlipVolume:
    """Flip ``img`` [C, D, H, W] and ``gt_seg_map`` [D, H, W] along each of ``axes``
    (0 = D, 1 = H, 2 = W) independently with probability ``prob``.

    ``flip_axes`` (metainfo) lists the spatial axes flipped an odd number of
    times, so flipping a prediction along them undoes it; ``flip`` says
    whether there is any.
    """

    def __init__(self, prob: float = 0.1, axes: int | Sequence[int] = (0, 1, 2)):
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"RandomFlipVolume: axes must be distinct spatial axes among 0 (D), "
                             f"1 (H), 2 (W), got {axes!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlipVolume: prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.axes = axes

    def flip(self, results: dict, axis: int) -> dict:
        """Flip along one spatial axis unconditionally."""
        results["img"] = np.ascontiguousarray(np.flip(results["img"], axis + 1))
        if results.get("gt_seg_map") is not None:
            results["gt_seg_map"] = np.ascontiguousarray(np.flip(results["gt_seg_map"], axis))
        flipped = set(results.get("flip_axes", ())) ^ {axis}
        results["flip_axes"] = tuple(sorted(flipped))
        results["flip"] = bool(flipped)
        return results

    def __call__(self, results: dict) -> dict:
        if results["img"].ndim != 4:
            raise ValueError(f"RandomFlipVolume: 'img' must be [C, D, H, W], got shape "
                             f"{results['img'].shape}")
        results.setdefault("flip_axes", ())
        results.setdefault("flip", False)
        for axis in self.axes:
            if self.prob > 0 and random.random() < self.prob:
                self.flip(results, axis)
        return results

    def __repr__(self) -> str:
        return f"RandomFlipVolume(prob={self.prob}, axes={self.axes})"
