"""Random (resized-style) crop that drops boxes left mostly outside the window."""
from __future__ import annotations

import math
import random

import numpy as np

from toolbox.datasets.transforms.base import bbox_params, record_crop, run_albumentations

__all__ = ["RandomCrop"]


class RandomCrop:
    """Crop a random window, like torchvision's ``RandomResizedCrop`` sampling.

    The window covers a fraction ``area_range`` of the image with an aspect
    ratio (w / h) drawn log-uniformly from ``aspect_ratio_range``. Boxes are
    clipped to the window; a box keeping less than ``min_visibility`` of its
    area is dropped (with its label, ignore flag and mask). Up to
    ``max_attempts`` windows are tried until one keeps at least one
    non-ignored box (when the image had one); otherwise the image is left
    uncropped. Follow it with :class:`Resize` for a fixed output size.
    The segmentation label map ``gt_seg_map`` is cropped with the image.
    """

    def __init__(self, area_range: tuple[float, float] = (0.3, 1.0),
                 aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
                 min_visibility: float = 0.3, prob: float = 1.0, max_attempts: int = 10):
        lo, hi = area_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"RandomCrop: area_range must satisfy 0 < lo <= hi <= 1, "
                             f"got {area_range!r}")
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(f"RandomCrop: aspect_ratio_range must be positive and ordered, "
                             f"got {aspect_ratio_range!r}")
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"RandomCrop: min_visibility must be in [0, 1], got {min_visibility}")
        self.area_range = (float(lo), float(hi))
        self.aspect_ratio_range = tuple(float(a) for a in aspect_ratio_range)
        self.min_visibility = float(min_visibility)
        self.prob = prob
        self.max_attempts = max_attempts

    def sample_window(self, h: int, w: int) -> tuple[int, int, int, int] | None:
        """A random (x0, y0, x1, y1) window inside an h x w image, or None."""
        for _ in range(self.max_attempts):
            area = h * w * random.uniform(*self.area_range)
            log_lo, log_hi = (math.log(a) for a in self.aspect_ratio_range)
            ratio = math.exp(random.uniform(log_lo, log_hi))
            cw = int(round(math.sqrt(area * ratio)))
            ch = int(round(math.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                x0 = random.randint(0, w - cw)
                y0 = random.randint(0, h - ch)
                return x0, y0, x0 + cw, y0 + ch
        return None

    def crop(self, results: dict, window: tuple[int, int, int, int]) -> dict:
        """Crop ``results`` to the window (x0, y0, x1, y1), pixel bounds."""
        import albumentations as A

        x0, y0, x1, y1 = (int(v) for v in window)
        h, w = results["img"].shape[:2]
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"RandomCrop: window {window} is not inside the {w}x{h} image")
        compose = A.Compose([A.Crop(x_min=x0, y_min=y0, x_max=x1, y_max=y1)],
                            bbox_params=bbox_params(min_visibility=self.min_visibility))
        run_albumentations(results, compose)
        if results.get("gt_seg_map") is not None:
            results["gt_seg_map"] = np.ascontiguousarray(results["gt_seg_map"][y0:y1, x0:x1])
        record_crop(results, x0, y0, x1 - x0, y1 - y0, w, h)
        return results

    def _keeps_an_object(self, results: dict, window) -> bool:
        """Whether the window keeps a non-ignored box (same rule as albumentations)."""
        b = np.asarray(results["gt_bboxes"], np.float32).reshape(-1, 4)
        keep = ~np.asarray(results.get("gt_ignore_flags", np.zeros(len(b), bool)), bool)
        b = b[keep]
        x0, y0, x1, y1 = window
        iw = (np.minimum(b[:, 2], x1) - np.maximum(b[:, 0], x0)).clip(0)
        ih = (np.minimum(b[:, 3], y1) - np.maximum(b[:, 1], y0)).clip(0)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        visible = iw * ih >= self.min_visibility * area
        return bool((visible & (iw * ih > 0)).any())

    def __call__(self, results: dict) -> dict:
        if self.prob < 1.0 and random.random() >= self.prob:
            return results
        h, w = results["img"].shape[:2]
        n = len(results.get("gt_bboxes", ()))
        had_objects = n > 0 and not np.all(results.get("gt_ignore_flags", np.zeros(n, bool)))
        for _ in range(self.max_attempts):
            window = self.sample_window(h, w)
            if window is None:
                return results
            if not had_objects or self._keeps_an_object(results, window):
                return self.crop(results, window)
        return results

    def __repr__(self) -> str:
        return (f"RandomCrop(area_range={self.area_range}, aspect_ratio_range="
                f"{self.aspect_ratio_range}, min_visibility={self.min_visibility})")
