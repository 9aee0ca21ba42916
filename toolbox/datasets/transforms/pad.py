"""Pad the image (masks, label map) at the bottom/right to a multiple of ``size_divisor``."""
from __future__ import annotations

import numpy as np

__all__ = ["Pad"]


class Pad:
    """Pad bottom/right to a multiple of ``size_divisor`` or to a fixed ``size``.

    Padding adds no offset, so boxes and the geometry record are unchanged;
    ``pad_shape`` is recorded. Pad after ``Normalize`` so ``pad_val=0`` is
    the mean colour. Masks are padded with 0 and the segmentation label map
    ``gt_seg_map`` with ``seg_pad_val`` (255, the ignore index).

    Batches need no ``Pad``: the model's data preprocessor pads each batch
    to its ``pad_size_divisor`` on the device. Use it for a fixed ``size``.
    """

    def __init__(self, size_divisor: int | None = 32, size: tuple[int, int] | None = None,
                 pad_val: float = 0.0, seg_pad_val: int = 255):
        if (size is None) == (size_divisor is None):
            raise ValueError("Pad: give exactly one of size_divisor and size (h, w)")
        if size_divisor is not None and size_divisor <= 0:
            raise ValueError(f"Pad: size_divisor must be positive, got {size_divisor}")
        self.size_divisor = size_divisor
        self.size = tuple(size) if size is not None else None
        self.pad_val = pad_val
        self.seg_pad_val = int(seg_pad_val)

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        h, w = img.shape[:2]
        if self.size is not None:
            ph, pw = self.size
            if ph < h or pw < w:
                raise ValueError(f"Pad: image {h}x{w} is larger than size {self.size}")
        else:
            d = self.size_divisor
            ph, pw = -(-h // d) * d, -(-w // d) * d
        if (ph, pw) != (h, w):
            out = np.full((ph, pw) + img.shape[2:], self.pad_val, dtype=img.dtype)
            out[:h, :w] = img
            results["img"] = out
            masks = results.get("gt_masks")
            if masks is not None:
                padded = np.zeros((len(masks), ph, pw), masks.dtype)
                padded[:, :h, :w] = masks
                results["gt_masks"] = padded
            seg = results.get("gt_seg_map")
            if seg is not None:
                padded = np.full((ph, pw), self.seg_pad_val, seg.dtype)
                padded[:h, :w] = seg
                results["gt_seg_map"] = padded
        results["pad_shape"] = (ph, pw)
        return results

    def __repr__(self) -> str:
        return f"Pad(size_divisor={self.size_divisor}, size={self.size}, pad_val={self.pad_val})"
