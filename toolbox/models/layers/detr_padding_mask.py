"""Which cells of a DETR feature map are padding: two rules.

``cover_padding_mask`` marks a cell valid when it covers any pixel of the
image; ``nearest_padding_mask`` nearest-interpolates the pixel mask of the
padded batch (the official DETR's and Hugging Face's rule).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cover_padding_mask", "nearest_padding_mask"]


def cover_padding_mask(feat: Tensor, batch_img_metas: Sequence[dict] | None) -> Tensor:
    """[B, h, w] bool, True where a feature cell covers only padding: a
    cell is valid if it covers any pixel of the sample's ``img_shape``
    (the padded batch is ``batch_input_shape``)."""
    batch, _, h, w = feat.shape
    mask = feat.new_zeros((batch, h, w), dtype=torch.bool)
    if batch_img_metas is None:
        return mask
    if len(batch_img_metas) != batch:
        raise ValueError(f"DETRHead: {len(batch_img_metas)} image metas for a batch of {batch}")
    for i, meta in enumerate(batch_img_metas):
        if "img_shape" not in meta or "batch_input_shape" not in meta:
            continue
        img_h, img_w = meta["img_shape"][:2]
        pad_h, pad_w = meta["batch_input_shape"][:2]
        valid_h = min(h, math.ceil(img_h * h / pad_h))
        valid_w = min(w, math.ceil(img_w * w / pad_w))
        mask[i, valid_h:, :] = True
        mask[i, :, valid_w:] = True
    return mask


def nearest_padding_mask(feat: Tensor, batch_img_metas: Sequence[dict] | None) -> Tensor:
    """[B, h, w] bool, True at padding: each image's pixel mask in the
    padded ``batch_input_shape``, nearest-interpolated to the feature size
    (the official DETR's and HF's rule)."""
    batch, _, h, w = feat.shape
    if batch_img_metas is None:
        return feat.new_zeros((batch, h, w), dtype=torch.bool)
    if len(batch_img_metas) != batch:
        raise ValueError(f"DETRHead: {len(batch_img_metas)} image metas for a batch of {batch}")
    shapes = {tuple(m["batch_input_shape"][:2]) for m in batch_img_metas
              if "batch_input_shape" in m}
    if not shapes:
        return feat.new_zeros((batch, h, w), dtype=torch.bool)
    if len(shapes) > 1:
        raise ValueError(f"DETRHead: the image metas disagree on 'batch_input_shape': "
                         f"{sorted(shapes)}")
    pad_h, pad_w = shapes.pop()
    pixels = feat.new_zeros((batch, pad_h, pad_w))
    for i, meta in enumerate(batch_img_metas):
        if "img_shape" in meta and "batch_input_shape" in meta:
            img_h, img_w = meta["img_shape"][:2]
            pixels[i, img_h:, :] = 1.0
            pixels[i, :, img_w:] = 1.0
    return F.interpolate(pixels[None], size=(h, w))[0].bool()
