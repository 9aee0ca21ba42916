"""Adaptively Spatial Feature Fusion (Liu et al., "Learning Spatial Fusion for
Single-Shot Object Detection", 2019).

For each output level ``l`` every input level ``n`` is resized to level
``l``'s size and channels:

* ``n`` coarser than ``l`` (going to a finer level): a 1x1 conv to level
  ``l``'s input channels, then nearest upsampling to level ``l``'s exact size;
* ``n`` one level finer (stride ratio 2): a stride-2 3x3 conv;
* ``n`` ``k >= 2`` levels finer (stride ratio ``2**k``): ``k - 1`` stride-2
  3x3 max-pools, then a stride-2 3x3 conv. For ``k = 2`` this is the paper's
  "max-pool then conv"; larger gaps add parameter-free pools rather than
  convs, so the cost of the extra levels stays small.

Each resized map is compressed to ``compress_channels`` by a 1x1 conv; the
concatenation goes through a 1x1 conv to ``N`` logits, a softmax over levels
gives per-pixel weights, the weighted sum of the resized maps goes through a
3x3 conv to ``out_channels``. A downsampled map whose size is off by the
rounding of a floor-sized pyramid is snapped to the target size by nearest
interpolation.

Numerical reference: none from outside. No independent ASFF implementation
for this neck form is available to compare outputs with, so the tests check
it against the paper's recipe instead: a re-derivation of every level in
plain ``torch.nn.functional`` (tests/models/necks/test_asff.py), hand-worked
fusion weights (uniform and known logits), output shapes and channels at odd
input sizes, and that gradients reach every level and parameter.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from toolbox.models.necks.base import Neck
from toolbox.structures.feature_spec import FeatureSpec

__all__ = ["ASFF"]


def _positive_int_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, int) or not isinstance(value, Sequence) or not value or any(
            not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in value):
        raise ValueError(f"ASFF: '{name}' must be a non-empty tuple of positive ints, "
                         f"got {value!r}")
    return tuple(value)


class LevelResize(nn.Module):
    """Brings one input level to another level's channels and size.

    ``forward(x, size)`` runs ``layers`` (see the module docstring) and makes
    the result exactly ``size`` by nearest interpolation: that is the
    upsampling step, and a no-op after downsampling unless rounding differs.
    """

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        x = self.layers(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="nearest")
        return x


class ASFF(Neck):
    """Per-pixel softmax-weighted fusion of all levels into each level.

    Args:
        in_channels: channels of each input map, finest first (N >= 2).
        in_strides: stride of each input; strictly increasing, each ratio
            between levels a power of two.
        out_channels: channels of every output (int) or one per level.
        compress_channels: width of the 1x1 convs computing the weights.
        return_weights: if True, ``forward`` returns ``(outputs, weights)``
            where ``weights[l]`` is ``[B, N, H_l, W_l]`` and sums to 1 over N.
        norm_cfg, act_cfg: mmcv configs for every conv but the logits conv
            (default BN + LeakyReLU(0.1), as in the authors' YOLOv3 code).
        input_shape: the previous part's ``output_shape()`` (what detectors
            pass); instead of, or agreeing with, ``in_channels`` / ``in_strides``.
    """

    def __init__(self, in_channels: Sequence[int] | None = None,
                 in_strides: Sequence[int] | None = None,
                 out_channels: int | Sequence[int] | None = None, compress_channels: int = 16,
                 return_weights: bool = False, norm_cfg: dict | None = dict(type="BN"),
                 act_cfg: dict | None = dict(type="LeakyReLU", negative_slope=0.1),
                 init_cfg=None, input_shape: Sequence[FeatureSpec] | None = None):
        super().__init__(init_cfg=init_cfg)
        in_channels, in_strides = self.resolve_inputs(input_shape, in_channels, in_strides)
        in_channels = _positive_int_tuple(in_channels, "in_channels")
        in_strides = _positive_int_tuple(in_strides, "in_strides")
        num_levels = len(in_channels)
        if num_levels < 2:
            raise ValueError(f"ASFF: needs at least 2 levels, got in_channels={in_channels}")
        if len(in_strides) != num_levels:
            raise ValueError(f"ASFF: 'in_strides' {in_strides} must have one entry per "
                             f"'in_channels' {in_channels}")
        if isinstance(out_channels, int) and not isinstance(out_channels, bool):
            out_channels = (out_channels,) * num_levels
        out_channels = _positive_int_tuple(out_channels, "out_channels")
        if len(out_channels) != num_levels:
            raise ValueError(f"ASFF: 'out_channels' {out_channels} must be an int or have "
                             f"one entry per level ({num_levels})")
        if not isinstance(compress_channels, int) or compress_channels <= 0:
            raise ValueError(f"ASFF: 'compress_channels' must be a positive int, "
                             f"got {compress_channels!r}")
        for fine, coarse in zip(in_strides, in_strides[1:]):
            ratio = coarse // fine
            if coarse % fine or ratio < 2 or ratio & (ratio - 1):
                raise ValueError(f"ASFF: 'in_strides' must increase by powers of two "
                                 f"(finest first), got {in_strides}")

        self.in_channels = in_channels
        self.in_strides = in_strides
        self.return_weights = return_weights
        self.declare_outputs(out_channels, in_strides)

        def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> ConvModule:
            return ConvModule(cin, cout, kernel, stride=stride, padding=kernel // 2,
                              norm_cfg=norm_cfg, act_cfg=act_cfg)

        self.resizers = nn.ModuleList()
        self.compress_convs = nn.ModuleList()
        self.weight_logits = nn.ModuleList()
        self.fuse_convs = nn.ModuleList()
        for target, width in enumerate(in_channels):
            resizers = nn.ModuleList()
            for source, cin in enumerate(in_channels):
                if source == target:
                    resizers.append(LevelResize([]))
                elif source > target:  # coarser source: 1x1 conv, then upsample
                    resizers.append(LevelResize([conv(cin, width, 1)]))
                else:  # finer source: (k - 1) max-pools, then a stride-2 conv
                    steps = (in_strides[target] // in_strides[source]).bit_length() - 1
                    pools = [nn.MaxPool2d(3, stride=2, padding=1) for _ in range(steps - 1)]
                    resizers.append(LevelResize([*pools, conv(cin, width, 3, 2)]))
            self.resizers.append(resizers)
            self.compress_convs.append(nn.ModuleList(
                conv(width, compress_channels, 1) for _ in range(num_levels)))
            self.weight_logits.append(nn.Conv2d(compress_channels * num_levels, num_levels, 1))
            self.fuse_convs.append(conv(width, out_channels[target], 3))

    def forward(self, inputs: Sequence[Tensor]):
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"ASFF: expected {len(self.in_channels)} input maps "
                             f"(in_channels={self.in_channels}), got {len(inputs)}")
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f"ASFF: input {i} must be [B, {c}, H, W], "
                                 f"got {tuple(x.shape)}")
        outs, all_weights = [], []
        for target, x_target in enumerate(inputs):
            size = x_target.shape[-2:]
            resized = [resize(x, size) for resize, x in zip(self.resizers[target], inputs)]
            compressed = [c(r) for c, r in zip(self.compress_convs[target], resized)]
            weights = self.weight_logits[target](torch.cat(compressed, dim=1)).softmax(dim=1)
            fused = sum(weights[:, n:n + 1] * r for n, r in enumerate(resized))
            outs.append(self.fuse_convs[target](fused))
            all_weights.append(weights)
        if self.return_weights:
            return tuple(outs), tuple(all_weights)
        return tuple(outs)
