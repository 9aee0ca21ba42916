"""Shared pieces of the data pipeline: ``Compose``, the albumentations runner
and the geometry bookkeeping every geometric transform uses.

The result dict a transform receives and returns:

* ``img``: ``np.ndarray[H, W, 3]``, RGB, ``uint8`` after :class:`LoadImage`
  (and packed as ``uint8``: the model's data preprocessor normalises on the
  device) or ``float32`` after :class:`Normalize`;
* ``img_id``, ``img_path``, ``ori_shape`` (h, w of the file), ``img_shape``
  (h, w now), ``pad_shape``;
* ``gt_bboxes`` (``float32[N, 4]``, x1 y1 x2 y2 in ``img_shape``
  coordinates), ``gt_labels`` (``int64[N]``), ``gt_ignore_flags``
  (``bool[N]``: COCO crowd / VOC difficult) and, when masks were asked for,
  ``gt_masks`` (``uint8[N, H, W]``);
* ``ori_gt_bboxes`` / ``ori_gt_labels`` / ``ori_gt_ignore_flags`` (and
  ``ori_gt_masks``): the same annotations, never transformed;
* the geometry record: ``scale_factor`` (w_scale, h_scale), ``crop_offset``
  (x, y), ``flip`` and ``flip_direction``. See
  :mod:`toolbox.datasets.base` for how they map boxes back to the original
  image; the ``record_*`` helpers below keep them consistent in any order
  of resize, crop and flip.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np

FLIP_AXES = {None: (False, False), "horizontal": (True, False),
             "vertical": (False, True), "diagonal": (True, True)}


class Compose:
    """Apply transforms in order; config dicts are built through ``TRANSFORMS``."""

    def __init__(self, transforms: Sequence[dict | Callable] | None = ()):
        from toolbox.registry import TRANSFORMS

        self.transforms = []
        for i, t in enumerate(transforms or ()):
            if isinstance(t, dict):
                t = TRANSFORMS.build(t)
            if not callable(t):
                raise TypeError(f"pipeline[{i}] must be a transform config dict or a "
                                f"callable, got {type(t).__name__}")
            self.transforms.append(t)

    def __call__(self, results: dict) -> dict:
        for t in self.transforms:
            out = t(results)
            if out is None:
                raise RuntimeError(f"transform {type(t).__name__} returned None; "
                                   "transforms must return the result dict")
            results = out
        return results

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(t) for t in self.transforms)
        return f"Compose(\n    {inner})"


# --------------------------------------------------------------------------
# geometry bookkeeping


def init_geometry(results: dict) -> dict:
    """Fill the geometry record of a fresh result dict (identity mapping)."""
    h, w = results["img"].shape[:2]
    results.setdefault("ori_shape", (h, w))
    results["img_shape"] = (h, w)
    results.setdefault("scale_factor", (1.0, 1.0))
    results.setdefault("crop_offset", (0.0, 0.0))
    results.setdefault("flip", False)
    results.setdefault("flip_direction", None)
    return results


def _flip_axes(results: dict) -> tuple[bool, bool]:
    if not results.get("flip", False):
        return False, False
    return FLIP_AXES[results.get("flip_direction")]


def record_resize(results: dict, w_scale: float, h_scale: float) -> None:
    """The image (and every coordinate) was scaled by (w_scale, h_scale)."""
    sx, sy = results.get("scale_factor", (1.0, 1.0))
    ox, oy = results.get("crop_offset", (0.0, 0.0))
    results["scale_factor"] = (float(sx * w_scale), float(sy * h_scale))
    results["crop_offset"] = (float(ox * w_scale), float(oy * h_scale))


def record_crop(results: dict, x0: int, y0: int, new_w: int, new_h: int,
                old_w: int, old_h: int) -> None:
    """The window [x0, x0 + new_w) x [y0, y0 + new_h) of an old_w x old_h image was kept.

    The offset is stored in the un-flipped frame: on a flipped axis the
    window's distance from the far edge is what shifts the coordinates.
    """
    fx, fy = _flip_axes(results)
    ox, oy = results.get("crop_offset", (0.0, 0.0))
    ox += (old_w - x0 - new_w) if fx else x0
    oy += (old_h - y0 - new_h) if fy else y0
    results["crop_offset"] = (float(ox), float(oy))


def record_flip(results: dict, direction: str) -> None:
    """The image was flipped along ``direction``; two flips cancel."""
    if direction not in ("horizontal", "vertical", "diagonal"):
        raise ValueError(f"flip direction must be 'horizontal', 'vertical' or "
                         f"'diagonal', got {direction!r}")
    fx, fy = _flip_axes(results)
    dx, dy = FLIP_AXES[direction]
    fx, fy = fx ^ dx, fy ^ dy
    inverse = {v: k for k, v in FLIP_AXES.items()}
    results["flip"] = fx or fy
    results["flip_direction"] = inverse[(fx, fy)]


# --------------------------------------------------------------------------
# albumentations


def bbox_params(min_visibility: float = 0.0, min_area: float = 0.0):
    """``A.BboxParams`` for x1 y1 x2 y2 pixel boxes tracked by instance index."""
    import albumentations as A

    return A.BboxParams(format="pascal_voc", label_fields=["instance_index"],
                        min_visibility=min_visibility, min_area=min_area, clip=True)


def reseed(compose: Any) -> None:
    """Draw the albumentations seed from Python's ``random``.

    Albumentations keeps its own generator, which forked data-loader workers
    would share; Python's ``random`` is re-seeded per worker by PyTorch (and
    globally by mmengine's ``randomness.seed``), so reseeding from it gives
    distinct, reproducible augmentations.
    """
    compose.set_random_seed(random.getrandbits(32))


def run_albumentations(results: dict, compose: Any, with_seg_map: bool = False) -> dict:
    """Run an ``A.Compose`` (built with :func:`bbox_params`) on a result dict.

    Image, boxes, instance masks and, with ``with_seg_map``, the semantic
    label map (``gt_seg_map`` as albumentations' ``mask`` target: nearest
    interpolation, padded with the transform's ``fill_mask``; the toolbox's
    own geometric transforms move it themselves) go through together; labels, ignore flags
    and masks of boxes the transform dropped (e.g. cropped away) are dropped
    with them. ``img_shape`` is updated; the geometry record is the caller's
    job.
    """
    img = results["img"]
    boxes = np.asarray(results.get("gt_bboxes", np.zeros((0, 4), np.float32)), np.float32)
    n = len(boxes)
    args = dict(image=img, bboxes=boxes.reshape(-1, 4),
                instance_index=np.arange(n, dtype=np.int64))
    masks = results.get("gt_masks")
    if masks is not None and n > 0:
        args["masks"] = np.ascontiguousarray(masks)
    if with_seg_map and results.get("gt_seg_map") is not None:
        args["mask"] = np.ascontiguousarray(results["gt_seg_map"])
    out = compose(**args)
    if "mask" in args:
        results["gt_seg_map"] = np.asarray(out["mask"]).astype(results["gt_seg_map"].dtype)
    new_img = out["image"]
    keep = np.asarray(out["instance_index"], dtype=np.int64).reshape(-1)
    results["img"] = new_img
    results["img_shape"] = tuple(new_img.shape[:2])
    if "gt_bboxes" in results:
        results["gt_bboxes"] = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        for key in ("gt_labels", "gt_ignore_flags"):
            if key in results:
                results[key] = np.asarray(results[key])[keep]
    if masks is not None:
        h, w = new_img.shape[:2]
        if n > 0:
            new_masks = np.asarray(out["masks"], dtype=np.uint8).reshape(-1, h, w)
            results["gt_masks"] = new_masks[keep]
        else:
            results["gt_masks"] = np.zeros((0, h, w), np.uint8)
    return results
