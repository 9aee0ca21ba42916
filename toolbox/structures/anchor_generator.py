"""Dense anchors on every level of a feature pyramid (RetinaNet, SSD, RPN).

Level ``i`` has stride ``strides[i]`` and a base size (``base_sizes[i]``,
default the stride). Its base anchors are every (ratio, scale) pair, ratio
major: for ratio ``r = h / w`` and scale ``s`` the anchor is
``w = base * s / sqrt(r)``, ``h = base * s * sqrt(r)``. The anchor of cell
``(y, x)`` is centred on ``((x + center_offset) * stride,
(y + center_offset) * stride)``.

Anchor order on a level is ``(y, x, anchor)``: the anchor at flat index
``(y * W + x) * A + a``. This is the order of a head output ``[B, A * K, H,
W]`` permuted to ``[B, H, W, A * K]`` and reshaped to ``[B, H * W * A, K]``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def _as_positive_floats(values, name: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        values = (values,)
    values = tuple(float(v) for v in values)
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"AnchorGenerator: '{name}' must be a non-empty sequence of "
                         f"positive numbers, got {values}")
    return values


class AnchorGenerator:
    """Anchors in x1 y1 x2 y2 for each pyramid level.

    Args:
        strides: stride of each level, in input pixels.
        ratios: height / width ratios of the base anchors.
        scales: anchor sizes as multiples of the base size. Give either
            ``scales`` or ``octave_base_scale`` with ``scales_per_octave``
            (scales ``octave_base_scale * 2 ** (k / scales_per_octave)``).
        base_sizes: base size of each level (default: the strides).
        center_offset: anchor centre inside a cell, in strides (0 puts it on
            the cell's top-left corner, 0.5 on its centre).
        sizes: absolute anchor sizes per level (torchvision's ``sizes``, e.g.
            ``((32, 40, 50), (64, 80, 101), ...)``), instead of ``scales``; every
            level needs the same number of sizes.
        round_base_anchors: round the base anchors' corners to whole pixels
            (computed in float32 as ``[-w, -h, w, h] / 2``, torchvision's
            ``AnchorGenerator``).
        stride_from_input: take each level's stride from the padded input,
            ``input_size // featmap_size`` per axis (torchvision's rule, which
            differs from the nominal stride when the input is not a multiple
            of it); ``grid_anchors`` then needs ``input_size``.

    ``ALTERNATIVES`` names, for each way of giving the anchor sizes, the
    arguments that give them another way: a config merged over a default
    (see :func:`toolbox.models.heads.parts.with_defaults`) drops the
    default's alternatives of what it sets.
    """

    CACHE_SIZE = 16
    ALTERNATIVES = {
        "sizes": ("scales", "octave_base_scale", "scales_per_octave", "base_sizes"),
        "scales": ("octave_base_scale", "scales_per_octave", "sizes"),
        "octave_base_scale": ("scales", "sizes"),
        "scales_per_octave": ("scales", "sizes"),
        "base_sizes": ("sizes",),
    }

    def __init__(self, strides: Sequence[int], ratios: Sequence[float] = (0.5, 1.0, 2.0),
                 scales: Sequence[float] | None = None,
                 octave_base_scale: float | None = None,
                 scales_per_octave: int | None = None,
                 base_sizes: Sequence[float] | None = None,
                 center_offset: float = 0.0,
                 sizes: Sequence[Sequence[float]] | None = None,
                 round_base_anchors: bool = False, stride_from_input: bool = False):
        self.strides = tuple(int(s) for s in _as_positive_floats(strides, "strides"))
        self.ratios = _as_positive_floats(ratios, "ratios")
        if scales is not None and (octave_base_scale is not None or scales_per_octave is not None):
            raise ValueError("AnchorGenerator: give either 'scales' or "
                             "'octave_base_scale' + 'scales_per_octave', not both")
        self.round_base_anchors = bool(round_base_anchors)
        self.stride_from_input = bool(stride_from_input)
        self.sizes = None
        if sizes is not None:
            if scales is not None or octave_base_scale is not None or base_sizes is not None:
                raise ValueError("AnchorGenerator: give 'sizes' (absolute, per level) or "
                                 "'scales'/'octave_base_scale' with 'base_sizes', not both")
            self.sizes = tuple(_as_positive_floats(level, "sizes") for level in sizes)
            if len(self.sizes) != len(self.strides) or len({len(x) for x in self.sizes}) != 1:
                raise ValueError("AnchorGenerator: 'sizes' needs one tuple per level "
                                 f"({len(self.strides)} strides), all of one length, got {sizes}")
            scales, base_sizes = (1.0,) * len(self.sizes[0]), self.strides
        elif scales is None:
            if octave_base_scale is None or scales_per_octave is None:
                raise ValueError("AnchorGenerator: give 'scales', or both "
                                 "'octave_base_scale' and 'scales_per_octave'")
            if int(scales_per_octave) < 1:
                raise ValueError("AnchorGenerator: 'scales_per_octave' must be >= 1, "
                                 f"got {scales_per_octave}")
            scales = [octave_base_scale * 2 ** (k / scales_per_octave)
                      for k in range(int(scales_per_octave))]
        self.scales = _as_positive_floats(scales, "scales")
        if base_sizes is None:
            base_sizes = self.strides
        self.base_sizes = _as_positive_floats(base_sizes, "base_sizes")
        if len(self.base_sizes) != len(self.strides):
            raise ValueError(f"AnchorGenerator: 'base_sizes' has {len(self.base_sizes)} "
                             f"entries but 'strides' has {len(self.strides)}")
        if not 0.0 <= center_offset < 1.0:
            raise ValueError(f"AnchorGenerator: 'center_offset' must be in [0, 1), "
                             f"got {center_offset}")
        self.center_offset = float(center_offset)
        if self.sizes is not None:
            self.base_anchors = [self._base_anchors(1.0, level) for level in self.sizes]
        else:
            self.base_anchors = [self._base_anchors(b) for b in self.base_sizes]
        self._anchor_cache: dict = {}

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def num_base_anchors(self) -> int:
        """Anchors per feature-map cell (the same on every level)."""
        return len(self.ratios) * len(self.scales)

    def _base_anchors(self, base_size: float, scales: Sequence[float] | None = None) -> Tensor:
        """[A, 4] anchors centred on the origin, ratio-major order."""
        if self.round_base_anchors:  # torchvision's arithmetic, float32
            sizes = torch.tensor(scales or self.scales, dtype=torch.float32) * base_size
            h_ratios = torch.tensor(self.ratios, dtype=torch.float32).sqrt()
            w = ((1 / h_ratios)[:, None] * sizes[None, :]).reshape(-1)
            h = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
            return (torch.stack([-w, -h, w, h], dim=1) / 2).round()
        ratios = torch.tensor(self.ratios, dtype=torch.float64)
        scales = torch.tensor(scales or self.scales, dtype=torch.float64)
        h_ratios = ratios.sqrt()
        w = (base_size * scales[None, :] / h_ratios[:, None]).reshape(-1)
        h = (base_size * scales[None, :] * h_ratios[:, None]).reshape(-1)
        return torch.stack([-w / 2, -h / 2, w / 2, h / 2], dim=-1).float()

    def _check_sizes(self, featmap_sizes) -> None:
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f"AnchorGenerator: got {len(featmap_sizes)} feature-map sizes "
                             f"for {self.num_levels} levels (strides {self.strides})")

    def level_strides(self, level: int, featmap_size: Sequence[int],
                      input_size: Sequence[int] | None = None) -> tuple[int, int]:
        """(stride_y, stride_x) of ``level``: the nominal one, or with
        ``stride_from_input`` the padded ``input_size`` divided by the map size."""
        if not self.stride_from_input:
            return self.strides[level], self.strides[level]
        if input_size is None:
            raise ValueError("AnchorGenerator: stride_from_input=True needs the padded "
                             "input_size (h, w) in grid_anchors")
        return (int(input_size[0]) // int(featmap_size[0]),
                int(input_size[1]) // int(featmap_size[1]))

    def single_level_grid_anchors(self, level: int, featmap_size: Sequence[int],
                                  device="cpu", dtype=torch.float32,
                                  input_size: Sequence[int] | None = None) -> Tensor:
        """[H * W * A, 4] anchors of one level, in (y, x, anchor) order."""
        feat_h, feat_w = int(featmap_size[0]), int(featmap_size[1])
        stride_y, stride_x = self.level_strides(level, featmap_size, input_size)
        shift_x = (torch.arange(feat_w, device=device, dtype=dtype) + self.center_offset) * stride_x
        shift_y = (torch.arange(feat_h, device=device, dtype=dtype) + self.center_offset) * stride_y
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        base = self.base_anchors[level].to(device=device, dtype=dtype)
        return (shifts + base[None]).reshape(-1, 4)

    def grid_anchors(self, featmap_sizes: Sequence[Sequence[int]], device="cpu",
                     dtype=torch.float32, input_size: Sequence[int] | None = None
                     ) -> list[Tensor]:
        """Anchors of every level: ``list[Tensor[H_i * W_i * A, 4]]``
        (``input_size``: the padded batch (h, w), used by ``stride_from_input``).

        Cached per (feature-map sizes, device, dtype, input size): the same
        tensors come back for the same shapes, so callers must not modify
        them in place (the last ``CACHE_SIZE`` shapes are kept)."""
        self._check_sizes(featmap_sizes)
        sizes = tuple((int(h), int(w)) for h, w in featmap_sizes)
        key = (sizes, str(torch.device(device)), dtype,
               tuple(int(v) for v in input_size[:2])
               if self.stride_from_input and input_size is not None else None)
        cache = self._anchor_cache
        anchors = cache.pop(key, None)
        if anchors is None:
            anchors = [self.single_level_grid_anchors(i, size, device, dtype, input_size)
                       for i, size in enumerate(sizes)]
            if len(cache) >= self.CACHE_SIZE:
                cache.pop(next(iter(cache)))
        cache[key] = anchors  # most recent last
        return list(anchors)

    def valid_flags(self, featmap_sizes: Sequence[Sequence[int]], img_shape: Sequence[int],
                    device="cpu") -> list[Tensor]:
        """Bool masks (one per level, anchor order) of anchors whose cell lies
        inside the unpadded image ``img_shape`` (h, w); cells that only cover
        batch padding are False."""
        self._check_sizes(featmap_sizes)
        flags = []
        for stride, (feat_h, feat_w) in zip(self.strides, featmap_sizes):
            valid_h = min(int(math.ceil(img_shape[0] / stride)), int(feat_h))
            valid_w = min(int(math.ceil(img_shape[1] / stride)), int(feat_w))
            ok_y = torch.arange(int(feat_h), device=device) < valid_h
            ok_x = torch.arange(int(feat_w), device=device) < valid_w
            cell = (ok_y[:, None] & ok_x[None, :]).reshape(-1)
            flags.append(cell[:, None].expand(-1, self.num_base_anchors).reshape(-1))
        return flags

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(strides={self.strides}, ratios={self.ratios}, "
                f"scales={tuple(round(s, 4) for s in self.scales)}, "
                f"center_offset={self.center_offset})")
