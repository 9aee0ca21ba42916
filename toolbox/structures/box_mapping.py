"""The one rule that maps predicted boxes back to the original image.

Heads predict in the network input's coordinates (``img_shape``, the
resized, cropped and flipped image); the detector maps the results back
once with :func:`boxes_to_original`, as torchvision's
``transform.postprocess`` and detectron2's ``detector_postprocess`` do.
The metainfo the transforms record (see :mod:`toolbox.datasets.base`):

* ``scale_factor`` = (w_scale, h_scale) from the original image to ``img_shape``;
* ``crop_offset`` = (x, y), the kept window's corner in the scaled frame;
* ``flip`` / ``flip_direction``, applied last, within ``img_shape``.

so ``original = (unflip(pred) + crop_offset) / scale_factor``, then clipped
to ``ori_shape``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

FLIP_DIRECTIONS = {"horizontal": (True, False), "vertical": (False, True),
                   "diagonal": (True, True)}


def pair_of(meta: dict, key: str, default: tuple[float, float]) -> tuple[float, float]:
    """A metainfo (x, y) pair as two floats (a scalar means both)."""
    value = meta.get(key, default)
    if isinstance(value, (int, float)):
        return float(value), float(value)
    value = [float(v) for v in value]
    if len(value) != 2:
        raise ValueError(f"metainfo '{key}' must be an (x, y) pair, got {value}")
    return value[0], value[1]


def scale_factor_of(meta: dict) -> tuple[float, float]:
    """(w_scale, h_scale) of an image's metainfo ((1, 1) when absent)."""
    return pair_of(meta, "scale_factor", (1.0, 1.0))


def flip_boxes(boxes: Tensor, shape: Sequence[int], direction: str) -> Tensor:
    """Mirror x1 y1 x2 y2 boxes inside an image of ``shape`` (h, w)."""
    if direction not in FLIP_DIRECTIONS:
        raise ValueError(f"metainfo 'flip_direction' must be horizontal, vertical or diagonal, "
                         f"got {direction!r}")
    flip_x, flip_y = FLIP_DIRECTIONS[direction]
    h, w = float(shape[0]), float(shape[1])
    x1, y1, x2, y2 = boxes.unbind(-1)
    if flip_x:
        x1, x2 = w - x2, w - x1
    if flip_y:
        y1, y2 = h - y2, h - y1
    return torch.stack([x1, y1, x2, y2], dim=-1)


def boxes_to_original(boxes: Tensor, meta: dict, clip: bool = True) -> Tensor:
    """Map x1 y1 x2 y2 ``boxes`` [N, 4] from ``img_shape`` coordinates to the
    original image (undo flip, add ``crop_offset``, divide by ``scale_factor``;
    with ``clip``, clamp to ``ori_shape`` when the metainfo has it)."""
    boxes = torch.as_tensor(boxes).float()
    if meta.get("flip", False):
        if "img_shape" not in meta:
            raise ValueError("metainfo has flip=True but no 'img_shape' to undo it in")
        boxes = flip_boxes(boxes, meta["img_shape"], meta.get("flip_direction") or "horizontal")
    w_scale, h_scale = scale_factor_of(meta)
    x_off, y_off = pair_of(meta, "crop_offset", (0.0, 0.0))
    boxes = (boxes + boxes.new_tensor([x_off, y_off, x_off, y_off])) / boxes.new_tensor(
        [w_scale, h_scale, w_scale, h_scale])
    if clip and "ori_shape" in meta:
        h, w = float(meta["ori_shape"][0]), float(meta["ori_shape"][1])
        boxes = torch.stack([boxes[..., 0].clamp(0, w), boxes[..., 1].clamp(0, h),
                             boxes[..., 2].clamp(0, w), boxes[..., 3].clamp(0, h)], dim=-1)
    return boxes
