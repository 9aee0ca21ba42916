"""Random fixed-size patches of a volume, optionally centred on foreground."""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["RandomCropVolume"]


class RandomCropVolume:
    """Crop a ``roi_size`` (D, H, W) patch of ``img`` [C, D, H, W] and ``gt_seg_map``.

    With ``pos`` and ``neg`` both 0 the patch is placed uniformly at random.
    Otherwise its centre is a random foreground voxel (label > 0 and not
    ignored) with probability ``pos / (pos + neg)``, else a random background
    voxel (label 0), as MONAI's ``RandCropByPosNegLabel``; the window is then
    shifted to stay inside the volume. A volume smaller than the patch is
    first padded at the end of each axis (image with ``pad_val``, labels
    with 255), so patches always have ``roi_size``.

    With ``class_ratios`` (one weight per class, background included) the
    centre instead follows MONAI's ``RandCropByLabelClasses``: a class is
    drawn with probability proportional to its ratio among the classes
    present in the label map, and the patch is centred on a random voxel of
    it (``pos`` and ``neg`` are then unused). This keeps small organs in the
    patches as often as the big ones.

    Records ``img_shape`` and ``crop_offset`` (x, y, z: last axis first, as
    ``scale_factor``); ``ori_gt_seg_map`` is untouched.
    """

    def __init__(self, roi_size: int | Sequence[int], pos: float = 1.0, neg: float = 1.0,
                 pad_val: float = 0.0, class_ratios: Sequence[float] | None = None):
        roi = (int(roi_size),) * 3 if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
        if len(roi) != 3 or min(roi) < 1:
            raise ValueError(f"RandomCropVolume: roi_size must be a positive int or (D, H, W), "
                             f"got {roi_size!r}")
        if pos < 0 or neg < 0:
            raise ValueError(f"RandomCropVolume: pos and neg must be >= 0, got {pos}, {neg}")
        if class_ratios is not None:
            ratios = [float(r) for r in class_ratios]
            if not ratios or min(ratios) < 0 or sum(ratios) == 0:
                raise ValueError("RandomCropVolume: class_ratios must be non-negative weights, "
                                 f"one per class, not all 0, got {class_ratios!r}")
            class_ratios = tuple(ratios)
        self.class_ratios = class_ratios
        self.roi_size = roi
        self.pos = float(pos)
        self.neg = float(neg)
        self.pad_val = pad_val

    def _pad(self, results: dict) -> None:
        img = results["img"]
        target = tuple(max(s, r) for s, r in zip(img.shape[1:], self.roi_size))
        if target == tuple(img.shape[1:]):
            return
        widths = [(0, t - s) for s, t in zip(img.shape[1:], target)]
        results["img"] = np.pad(img, [(0, 0)] + widths, constant_values=self.pad_val)
        if results.get("gt_seg_map") is not None:
            results["gt_seg_map"] = np.pad(results["gt_seg_map"], widths,
                                           constant_values=IGNORE_INDEX)

    def _class_mask(self, seg: np.ndarray) -> np.ndarray | None:
        """Voxels of a class drawn by ``class_ratios`` among those present."""
        present = [c for c, r in enumerate(self.class_ratios) if r > 0 and (seg == c).any()]
        if not present:
            return None
        c = random.choices(present, weights=[self.class_ratios[c] for c in present])[0]
        return seg == c

    def _centre(self, seg: np.ndarray | None) -> tuple[int, ...] | None:
        """A voxel to centre the patch on, or None for a uniform placement."""
        if seg is None:
            return None
        if self.class_ratios is not None:
            mask = self._class_mask(seg)
            if mask is None:
                return None
            choices = np.flatnonzero(mask)
        else:
            if self.pos + self.neg == 0:
                return None
            want_fg = random.random() < self.pos / (self.pos + self.neg)
            ignore = int(IGNORE_INDEX)
            choices = np.flatnonzero((seg > 0) & (seg != ignore) if want_fg else seg == 0)
        if choices.size == 0:
            return None
        return tuple(int(i) for i in np.unravel_index(choices[random.randrange(choices.size)],
                                                      seg.shape))

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        if img.ndim != 4:
            raise ValueError(f"RandomCropVolume: 'img' must be [C, D, H, W], got shape "
                             f"{img.shape} (load it with LoadVolume)")
        self._pad(results)
        size = results["img"].shape[1:]
        centre = self._centre(results.get("gt_seg_map"))
        starts = []
        for axis, (n, r) in enumerate(zip(size, self.roi_size)):
            if centre is None:
                starts.append(random.randint(0, n - r))
            else:
                starts.append(min(max(centre[axis] - r // 2, 0), n - r))
        window = tuple(slice(s, s + r) for s, r in zip(starts, self.roi_size))
        results["img"] = np.ascontiguousarray(results["img"][(slice(None),) + window])
        if results.get("gt_seg_map") is not None:
            results["gt_seg_map"] = np.ascontiguousarray(results["gt_seg_map"][window])
        results["img_shape"] = self.roi_size
        offset = results.get("crop_offset", (0.0, 0.0, 0.0))
        results["crop_offset"] = tuple(float(o + s) for o, s in zip(offset, starts[::-1]))
        return results

    def __repr__(self) -> str:
        return (f"RandomCropVolume(roi_size={self.roi_size}, pos={self.pos}, neg={self.neg}, "
                f"class_ratios={self.class_ratios})")
