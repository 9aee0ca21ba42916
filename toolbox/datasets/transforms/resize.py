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

    ``backend='torch'`` reproduces torchvision detection models'
    ``GeneralizedRCNNTransform.resize`` exactly (for the reference configs):
    the factor ``min(min_side / short, max_side / long)`` in Python floats
    (torchvision's eager path; its scripted path uses float32), the image is resized as float32 by
    ``F.interpolate(bilinear, scale_factor, recompute_scale_factor=True)``
    (new size ``floor(size * factor)``, not rounded; no antialiasing) and
    stays float32 (unrounded), and boxes are scaled by new / old per axis.
    Put it after ``Normalize(scale=255, ...)`` to get torchvision's pixels
    bit for bit (torchvision normalises, then resizes). ``keep_ratio`` must be on; masks and label maps still use the
    nearest-neighbour path.
    """

    def __init__(self, scale: int | tuple[int, int] = (1333, 800), keep_ratio: bool = True,
                 interpolation: str = "bilinear", backend: str = "cv2",
                 size_rule: str = "mmdet"):
        if isinstance(scale, int):
            scale = (scale, scale)
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"Resize: scale must be a positive int or (width, height), "
                             f"got {scale!r}")
        if interpolation not in _INTERP:
            raise ValueError(f"Resize: interpolation must be one of {sorted(_INTERP)}, "
                             f"got {interpolation!r}")
        if backend not in ("cv2", "torch"):
            raise ValueError(f"Resize: backend must be 'cv2' or 'torch', got {backend!r}")
        if backend == "torch" and (not keep_ratio or interpolation != "bilinear"):
            raise ValueError("Resize: backend='torch' (torchvision's rule) needs "
                             "keep_ratio=True and interpolation='bilinear'")
        if size_rule not in ("mmdet", "detr"):
            raise ValueError(f"Resize: size_rule must be 'mmdet' or 'detr', got {size_rule!r}")
        if size_rule == "detr" and (backend != "cv2" or not keep_ratio):
            raise ValueError("Resize: size_rule='detr' needs keep_ratio=True and backend='cv2'")
        self.size_rule = size_rule
        self.backend = backend
        self.scale = (int(scale[0]), int(scale[1]))
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation
        self._cache: dict = {}

    def target_size(self, h: int, w: int) -> tuple[int, int]:
        """(new_h, new_w) for an h x w image."""
        if not self.keep_ratio:
            return self.scale[1], self.scale[0]
        if self.size_rule == "detr":
            size, max_size = min(self.scale), max(self.scale)
            short, long = float(min(h, w)), float(max(h, w))
            if long / short * size > max_size:
                size = int(round(max_size * short / long))
            if min(h, w) == size:
                return h, w
            if w < h:
                return int(size * h / w), size
            return size, int(size * w / h)
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

    def _torch_resize(self, results: dict) -> tuple[int, int]:
        """torchvision's resize of the image and boxes; returns (new_h, new_w)."""
        import torch
        import torch.nn.functional as F

        img = results["img"]
        h, w = img.shape[:2]
        factor = min(min(self.scale) / min(h, w), max(self.scale) / max(h, w))  # eager: doubles
        tensor = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        tensor = tensor.reshape(h, w, -1).permute(2, 0, 1).contiguous()[None]
        out = F.interpolate(tensor, scale_factor=factor, mode="bilinear",
                            recompute_scale_factor=True, align_corners=False)[0]
        new_h, new_w = out.shape[-2:]
        out = out.permute(1, 2, 0).numpy()
        results["img"] = out if img.ndim == 3 else out[..., 0]
        results["img_shape"] = (new_h, new_w)
        if results.get("gt_bboxes") is not None:
            ratio = np.asarray([new_w / w, new_h / h] * 2, np.float32)
            results["gt_bboxes"] = np.asarray(results["gt_bboxes"], np.float32) * ratio
        if results.get("gt_masks") is not None:
            masks = np.asarray(results["gt_masks"])
            results["gt_masks"] = (np.stack([resize_label_map(m, new_h, new_w) for m in masks])
                                   if len(masks) else np.zeros((0, new_h, new_w), np.uint8))
        return new_h, new_w

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        if self.backend == "torch":
            new_h, new_w = self._torch_resize(results)
            if results.get("gt_seg_map") is not None:
                results["gt_seg_map"] = resize_label_map(results["gt_seg_map"], new_h, new_w)
            record_resize(results, new_w / w, new_h / h)
            return results
        new_h, new_w = self.target_size(h, w)
        if (new_h, new_w) != (h, w):
            run_albumentations(results, self._compose(new_h, new_w))
            if results.get("gt_seg_map") is not None:
                results["gt_seg_map"] = resize_label_map(results["gt_seg_map"], new_h, new_w)
        record_resize(results, new_w / w, new_h / h)
        return results

    def __repr__(self) -> str:
        backend = "" if self.backend == "cv2" else f", backend={self.backend!r}"
        return f"Resize(scale={self.scale}, keep_ratio={self.keep_ratio}{backend})"
