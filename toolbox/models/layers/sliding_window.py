"""Sliding-window inference for 2D images and 3D volumes.

The input ``[B, C, *S]`` is cut into overlapping windows of ``roi_size``;
each window goes through ``predictor`` (``[N, C, *roi] -> [N, K, *roi]``),
and the window outputs are blended back into ``[B, K, *S]`` with a weight
map (a Gaussian centred on the window, or constant), each voxel's sum
divided by its total weight.

The window grid and the Gaussian follow MONAI's
``monai.inferers.sliding_window_inference`` (same arguments give the same
result): the step along an axis is ``int(roi * (1 - overlap))`` (the full
axis when the window covers it), the last window is shifted back to end at
the border, an input smaller than the window is zero-padded symmetrically
(and the output cropped back), and the Gaussian has
``sigma = sigma_scale * roi`` per axis (``exp(-x^2 / 2 sigma^2)``, not
normalised) floored at ``max(min, 1e-3)`` so every voxel has some weight.
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sliding_window_inference", "window_starts", "importance_map"]

MODES = ("gaussian", "constant")


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis of length ``size`` (>= roi)."""
    step = roi if roi == size else max(int(roi * (1 - overlap)), 1)
    starts, start = [], 0
    while True:
        starts.append(min(start, size - roi))
        if start + roi >= size:
            return starts
        start += step


def importance_map(roi_size: Sequence[int], mode: str = "gaussian",
                   sigma_scale: float | Sequence[float] = 0.125,
                   device: torch.device | str | None = None) -> Tensor:
    """The blending weight of a window: ``Tensor[*roi_size]``, all > 0.

    Gaussian: the product of one unnormalised 1D Gaussian per axis (centred
    between the middle voxels of an even axis), floored at
    ``max(min, 1e-3)``; only ratios matter, except for that floor.
    """
    if mode == "constant":
        return torch.ones(tuple(roi_size), device=device)
    if mode != "gaussian":
        raise ValueError(f"sliding_window_inference: mode must be one of {MODES}, got {mode!r}")
    scales = ([float(sigma_scale)] * len(roi_size) if isinstance(sigma_scale, (int, float))
              else [float(s) for s in sigma_scale])
    if len(scales) != len(roi_size) or min(scales) <= 0:
        raise ValueError(f"sliding_window_inference: sigma_scale must be positive, one value "
                         f"or one per axis ({len(roi_size)}), got {sigma_scale!r}")
    weight = torch.ones((), device=device)
    for axis, (n, s) in enumerate(zip(roi_size, scales)):
        x = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2.0
        g = torch.exp(-(x ** 2) / (2 * (s * n) ** 2))
        weight = weight[..., None] * g  # outer product, one axis at a time
    return weight.clamp(min=max(weight.min().item(), 1e-3))


def _check(inputs: Tensor, roi_size, overlap, sw_batch_size) -> tuple[int, ...]:
    if not isinstance(inputs, Tensor) or inputs.dim() not in (4, 5):
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError("sliding_window_inference: 'inputs' must be a Tensor [B, C, H, W] or "
                         f"[B, C, D, H, W], got {shape}")
    dims = inputs.dim() - 2
    roi = (int(roi_size),) * dims if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
    if len(roi) != dims or min(roi) < 1:
        raise ValueError(f"sliding_window_inference: 'roi_size' must be {dims} positive ints "
                         f"for a {dims}D input, got {roi_size!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"sliding_window_inference: 'overlap' must be in [0, 1), got {overlap}")
    if sw_batch_size < 1:
        raise ValueError(f"sliding_window_inference: 'sw_batch_size' must be >= 1, "
                         f"got {sw_batch_size}")
    return roi


def sliding_window_inference(inputs: Tensor, roi_size: int | Sequence[int],
                             predictor: Callable[[Tensor], Tensor], overlap: float = 0.25,
                             mode: str = "gaussian", sw_batch_size: int = 1,
                             sigma_scale: float | Sequence[float] = 0.125) -> Tensor:
    """Blend ``predictor`` outputs over overlapping windows (see module docstring).

    Args:
        inputs: ``[B, C, H, W]`` or ``[B, C, D, H, W]``.
        roi_size: window size, one int per spatial axis (or one int for all).
        predictor: maps ``[N, C, *roi_size]`` to ``[N, K, *roi_size]``.
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        mode: 'gaussian' (centre-weighted) or 'constant' (plain average).
        sw_batch_size: windows per predictor call (taken across the batch).
        sigma_scale: Gaussian sigma as a fraction of the window, per axis or one.

    Returns ``[B, K, *S]`` in the predictor's dtype.
    """
    roi = _check(inputs, roi_size, overlap, sw_batch_size)
    spatial = tuple(inputs.shape[2:])
    pad = []  # F.pad order: last axis first, (before, after)
    for r, s in zip(reversed(roi), reversed(spatial)):
        diff = max(r - s, 0)
        pad += [diff // 2, diff - diff // 2]
    if any(pad):
        inputs = F.pad(inputs, pad)
    size = tuple(inputs.shape[2:])
    grid = list(itertools.product(*(window_starts(n, r, overlap) for n, r in zip(size, roi))))
    windows = [(b, starts) for b in range(inputs.shape[0]) for starts in grid]
    weight = importance_map(roi, mode, sigma_scale, device=inputs.device)

    output = count = None
    for first in range(0, len(windows), sw_batch_size):
        chunk = windows[first:first + sw_batch_size]
        slices = [tuple(slice(s, s + r) for s, r in zip(starts, roi)) for _, starts in chunk]
        batch = torch.cat([inputs[(slice(b, b + 1), slice(None)) + sl]
                           for (b, _), sl in zip(chunk, slices)])
        pred = predictor(batch)
        if not isinstance(pred, Tensor) or tuple(pred.shape[2:]) != roi or \
                pred.shape[0] != len(chunk):
            got = tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
            raise ValueError(f"sliding_window_inference: 'predictor' must map "
                             f"[{len(chunk)}, C, *{roi}] to [{len(chunk)}, K, *{roi}], got {got}")
        if output is None:
            output = pred.new_zeros((inputs.shape[0], pred.shape[1]) + size)
            count = pred.new_zeros((1, 1) + size)
            weight = weight.to(pred.dtype)
            counted = set()
        for (b, starts), sl, p in zip(chunk, slices, pred):
            output[(b, slice(None)) + sl] += p * weight
            if starts not in counted:  # every image shares the same window grid
                count[(0, 0) + sl] += weight
                counted.add(starts)
    output = output / count
    if any(pad):
        crop = tuple(slice(pad[2 * i], pad[2 * i] + s)
                     for i, s in enumerate(reversed(spatial)))[::-1]
        output = output[(slice(None), slice(None)) + crop]
    return output
