"""Resize the image, boxes, masks and label map, keeping the aspect ratio by default."""
from __future__ import annotations

import cv2
import numpy as np

from toolbox.datasets.transforms.base import bbox_params, record_resize, run_albumentations

__all__ = ["Resize"]

_INTERP = dict(nearest=cv2.INTER_NEAREST, bilinear=cv2.INTER_LINEAR,
               bicubic=cv2.INTER_CUBIC, area=cv2.INTER_AREA)


def resize_label_map(seg: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """Nearest-neighbour resize of an integer label map (cv2's grid, as the image).

    float32 carries any label below 2**24 exactly through cv2.
    """
    out = cv2.resize(np.asarray(seg).astype(np.float32), (new_w, new_h),
                     interpolation=cv2.INTER_NEAREST)
    return out.astype(seg.dtype)


class Resize:
    """Resize to ``scale`` = (width, height).

    With ``keep_ratio`` (default) the image is scaled by the largest factor
    that fits its long side in ``max(scale)`` and its short side in
    ``min(scale)`` (mmdetection's rule: ``scale=(1333, 800)`` is the usual
    COCO setting); the new size is ``round(size * factor)`` and the recorded
    ``scale_factor`` is the exact ratio new/old per axis, so
    ``box / scale_factor`` maps back exactly. Without ``keep_ratio`` the
    image is stretched to exactly ``scale``. Masks and the segmentation
    label map ``gt_seg_map`` use nearest neighbour (``ori_gt_seg_map`` is
    left as it is).
    """

    def __init__(self, scale: int | tuple[int, int] = (1333, 800), keep_ratio: bool = True,
                 interpolation: str = "bilinear"):
        if isinstance(scale, int):
            scale = (scale, scale)
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"Resize: scale must be a positive int or (width, height), "
                             f"got {scale!r}")
        if interpolation not in _INTERP:
            raise ValueError(f"Resize: interpolation must be one of {sorted(_INTERP)}, "
                             f"got {interpolation!r}")
        self.scale = (int(scale[0]), int(scale[1]))
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation
        self._cache: dict = {}

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """(new_h, new_w) for an h x w image."""
        if not self.keep_ratio:
            return self.scale[1], self.scale[0]
        factor = min(max(self.scale) / max(h, w), min(self.scale) / min(h, w))
        return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))

    def _compose(self, new_h: int, new_w: int):
        key = (new_h, new_w)
        if key not in self._cache:
            import albumentations as A

            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = A.Compose(
                [A.Resize(new_h, new_w, interpolation=_INTERP[self.interpolation],
                          mask_interpolation=cv2.INTER_NEAREST)],
                bbox_params=bbox_params())
        return self._cache[key]

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        new_h, new_w = self.target_size(h, w)
        if (new_h, new_w) != (h, w):
            run_albumentations(results, self._compose(new_h, new_w))
            if results.get("gt_seg_map") is not None:
                results["gt_seg_map"] = resize_label_map(results["gt_seg_map"], new_h, new_w)
        record_resize(results, new_w / w, new_h / h)
        return results

    def __repr__(self) -> str:
        return f"Resize(scale={self.scale}, keep_ratio={self.keep_ratio})"
