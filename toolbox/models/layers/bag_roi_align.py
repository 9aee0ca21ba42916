"""Multi-level RoIAlign as one weighted gather (``F.embedding_bag``).

Every output bin of RoIAlign is a weighted sum of feature-map cells: the
bilinear corners of its sampling points, each weighted by its interpolation
weight over the number of points. Written that way, all RoIs of all images
and pyramid levels are one ``embedding_bag`` over the cells of every level
(channels last), whose backward is one vectorised scatter instead of
torchvision's serial per-point CPU loop: on a Faster R-CNN training step
(4096 RoIs, 64 channels) forward + backward run ~2x faster.

The values are torchvision's ``roi_align`` (``aligned`` or not, fixed or
adaptive ``sampling_ratio``): the same sampling points, the same clamping at
the map border, zero for points more than a cell outside;
tests/models/layers/test_bag_roi_align.py compares outputs and gradients.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bag_roi_align"]


def _axis_corners(coords: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear corners ``(index [..., 2], weight [..., 2])`` along one axis of
    sample ``coords`` on maps of ``size`` cells (broadcast per RoI), with
    RoIAlign's rules: zero weight beyond one cell outside, clamped inside."""
    valid = (coords >= -1.0) & (coords <= size)
    coords = coords.clamp(min=0.0)
    low = coords.floor().minimum(size - 1)
    coords = torch.where(low >= size - 1, low, coords)
    high = (low + 1).minimum(size - 1)
    frac = coords - low
    weight = torch.stack([1.0 - frac, frac], dim=-1) * valid.unsqueeze(-1)
    return torch.stack([low, high], dim=-1).long(), weight


def _bins(rois: Tensor, base: Tensor, heights: Tensor, widths: Tensor, size: int,
          grid_h: int, grid_w: int, bin_h: Tensor, bin_w: Tensor) -> tuple[Tensor, Tensor]:
    """Cell indices and weights ``[K * size * size, grid_h * grid_w * 4]`` of
    the bins of ``rois`` ([K, 4] starts x1 y1 in cells, ``bin_*`` [K])."""
    count = rois.shape[0]
    steps_y = (torch.arange(size * grid_h, device=rois.device, dtype=rois.dtype) + 0.5) / grid_h
    steps_x = (torch.arange(size * grid_w, device=rois.device, dtype=rois.dtype) + 0.5) / grid_w
    ys = rois[:, 1:2] + steps_y[None] * bin_h[:, None]  # [K, size * grid_h]
    xs = rois[:, 0:1] + steps_x[None] * bin_w[:, None]
    iy, wy = _axis_corners(ys, heights[:, None])  # [K, size * grid_h, 2]
    ix, wx = _axis_corners(xs, widths[:, None])
    iy = iy.view(count, size, 1, grid_h, 2, 1, 1)
    wy = wy.view(count, size, 1, grid_h, 2, 1, 1)
    ix = ix.view(count, 1, size, 1, 1, grid_w, 2)
    wx = wx.view(count, 1, size, 1, 1, grid_w, 2)
    index = base.view(-1, 1, 1, 1, 1, 1, 1) + iy * widths.long().view(-1, 1, 1, 1, 1, 1, 1) + ix
    weight = wy * wx / float(grid_h * grid_w)
    per_bin = grid_h * 2 * grid_w * 2
    return index.reshape(count * size * size, per_bin), weight.reshape(count * size * size, per_bin)


def bag_roi_align(feats: Sequence[Tensor], rois: Tensor, levels: Tensor, output_size: int,
                  spatial_scales: Sequence[float], sampling_ratio: int = 0,
                  aligned: bool = True) -> Tensor:
    """RoIAlign features [K, C, S, S] of ``rois`` [K, 5] (batch index, x1 y1
    x2 y2 in input pixels), RoI ``k`` pooled from ``feats[levels[k]]``
    (each [B, C, H, W]) at ``spatial_scales[levels[k]]``; equal to
    ``torchvision.ops.roi_align`` level by level."""
    size, count = int(output_size), rois.shape[0]
    channels = feats[0].shape[1]
    device, dtype = rois.device, feats[0].dtype
    if count == 0:
        return feats[0].new_zeros((0, channels, size, size)) + sum(f.sum() * 0 for f in feats)
    table = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, channels) for f in feats])
    starts = torch.tensor([0] + [f.numel() // channels for f in feats[:-1]],
                          device=device).cumsum(0)
    heights = torch.tensor([float(f.shape[2]) for f in feats], device=device, dtype=dtype)[levels]
    widths = torch.tensor([float(f.shape[3]) for f in feats], device=device, dtype=dtype)[levels]
    scales = torch.tensor([float(s) for s in spatial_scales], device=device, dtype=dtype)[levels]
    base = starts[levels] + rois[:, 0].long() * (heights * widths).long()
    boxes = rois[:, 1:].to(dtype) * scales[:, None] - (0.5 if aligned else 0.0)
    roi_w, roi_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / size, roi_h / size
    if sampling_ratio > 0:
        grids = torch.full((count, 2), int(sampling_ratio), device=device)
    else:  # torchvision: ceil(roi size / output size) points per bin, per RoI
        grids = torch.stack([torch.ceil(roi_h / size), torch.ceil(roi_w / size)], 1).long()
    grids = grids.clamp(min=0)
    # one bag per output bin, in RoI order: each of a RoI's bins holds its
    # grid_h * grid_w points x 4 corners; RoIs sharing a grid are filled in together
    per_bin = grids[:, 0] * grids[:, 1] * 4
    ends = (per_bin * size * size).cumsum(0)
    index = torch.zeros(int(ends[-1]), dtype=torch.long, device=device)
    weight = table.new_zeros(int(ends[-1]))
    codes = grids[:, 0] * (int(grids[:, 1].max()) + 1) + grids[:, 1]
    for code in torch.unique(codes).tolist():
        select = torch.nonzero(codes == code).flatten()
        grid_h, grid_w = (int(v) for v in grids[select[0]])
        if grid_h == 0 or grid_w == 0:  # an empty RoI: no points, its bins are zero
            continue
        bin_index, bin_weight = _bins(boxes[select], base[select], heights[select],
                                      widths[select], size, grid_h, grid_w, bin_h[select],
                                      bin_w[select])
        length = size * size * grid_h * grid_w * 4
        where = ((ends[select] - length)[:, None]
                 + torch.arange(length, device=device)[None]).flatten()
        index[where] = bin_index.flatten()
        weight[where] = bin_weight.flatten()
    bag_sizes = per_bin.repeat_interleave(size * size)
    offsets = torch.cat([ends.new_zeros(1), bag_sizes.cumsum(0)[:-1]])
    pooled = F.embedding_bag(index, table, offsets, per_sample_weights=weight, mode="sum")
    return pooled.view(count, size, size, channels).permute(0, 3, 1, 2)
