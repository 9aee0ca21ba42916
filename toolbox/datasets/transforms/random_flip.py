"""Random horizontal / vertical / diagonal flip of image, boxes, masks and label map."""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from toolbox.datasets.transforms.base import bbox_params, record_flip, run_albumentations

__all__ = ["RandomFlip"]


class RandomFlip:
    """Flip with probability ``prob``.

    ``direction`` is 'horizontal', 'vertical', 'diagonal' (both axes) or a
    list of them, one drawn uniformly when the flip happens. Boxes map as
    ``x -> W - x`` (x1 and x2 swap), so flipping twice is the identity.
    The segmentation label map ``gt_seg_map`` is flipped with the image.
    """

    DIRECTIONS = ("horizontal", "vertical", "diagonal")

    def __init__(self, prob: float = 0.5, direction: str | Sequence[str] = "horizontal"):
        directions = [direction] if isinstance(direction, str) else list(direction)
        bad = [d for d in directions if d not in self.DIRECTIONS]
        if bad or not directions:
            raise ValueError(f"RandomFlip: direction must be one of {self.DIRECTIONS} "
                             f"(or a list of them), got {direction!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip: prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.directions = directions
        self._composes: dict = {}

    def _compose(self, direction: str):
        if direction not in self._composes:
            import albumentations as A

            ops = {"horizontal": [A.HorizontalFlip(p=1.0)],
                   "vertical": [A.VerticalFlip(p=1.0)],
                   "diagonal": [A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)]}[direction]
            self._composes[direction] = A.Compose(ops, bbox_params=bbox_params())
        return self._composes[direction]

    def flip(self, results: dict, direction: str) -> dict:
        """Flip unconditionally along ``direction``."""
        run_albumentations(results, self._compose(direction))
        seg = results.get("gt_seg_map")
        if seg is not None:
            axes = {"horizontal": (1,), "vertical": (0,), "diagonal": (0, 1)}[direction]
            results["gt_seg_map"] = np.ascontiguousarray(np.flip(seg, axes))
        record_flip(results, direction)
        return results

    def __call__(self, results: dict) -> dict:
        results.setdefault("flip", False)
        results.setdefault("flip_direction", None)
        if self.prob > 0 and random.random() < self.prob:
            self.flip(results, random.choice(self.directions))
        return results

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob}, direction={self.directions})"
