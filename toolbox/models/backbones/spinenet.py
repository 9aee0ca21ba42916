"""SpineNet: a scale-permuted backbone learned for detection (Du et al., CVPR 2020).

A 7x7/2 conv, a 3x3/2 max-pool and two L2 bottleneck blocks (the stem) feed
a searched graph of blocks whose levels go up and down (L2-L7). Every block
sums its two parents after resampling them with a narrow factor ``alpha``:

* a 1x1 conv (+BN+act) to ``alpha * parent_filters`` channels;
* going down: a 3x3 stride-2 conv (+BN+act), then one 3x3/2 max-pool per
  extra level; going up: nearest-neighbour upsampling;
* a 1x1 conv (+BN, no act) to the target block's input channels.

As in the authors' implementation, an *output* block also sums, unresampled,
every earlier block that nothing has consumed yet (out-degree 0) and that has
the output block's level and channels; in SpineNet-49 this folds block 11
(an L5 bottleneck) into the P5 output block. Sum -> activation -> block
group (``block_repeats`` blocks). Each output block then gets a 1x1 conv
(+BN+act) to ``endpoints_num_filters`` channels: P3-P7 at strides 8-128.

Differences from the TensorFlow reference, none of which changes parameter
counts: PyTorch's symmetric padding instead of TF ``SAME``; repeated 3x3/2
max-pools when going down several levels (the TF Model Garden version; the
older TPU code uses one larger pool); nearest resizing to the exact target
size so any input size works (``size_divisor`` 128 keeps every level aligned).

Numerical reference: none from outside. The TensorFlow weights and code are
not loadable here, so no output is compared with an independent
implementation; the tests (tests/models/backbones/test_spinenet.py) check
the structure instead: parameter counts with a RetinaNet head against the
paper's table (49 to 190, within 0.5%; 49S against an independent PyTorch
port, its known gap to the paper recorded in docs/spinenet.md), SpineNet-49's
multiply-adds against the paper (1%), and output shapes, strides and
channels of every variant.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer
from torch import nn
from torchvision.ops import StochasticDepth

from toolbox.models.backbones.spinenet_specs import (
    LEVEL_FILTERS, SCALING, SPINENET_BLOCKS, STEM_CHANNELS, BlockSpec)
from toolbox.models.backbones.base import Backbone

__all__ = ["SpineNet"]

OUTPUT_LEVELS = (3, 4, 5, 6, 7)
_EXPANSION = {"bottleneck": 4, "residual": 1}


def _conv(in_channels: int, out_channels: int, kernel_size: int, norm_cfg: dict,
          act_cfg: dict | None, stride: int = 1) -> ConvModule:
    return ConvModule(in_channels, out_channels, kernel_size, stride=stride,
                      padding=kernel_size // 2, bias=False,
                      norm_cfg=norm_cfg, act_cfg=act_cfg)


class _ResidualUnit(nn.Module):
    """A ResNet bottleneck (1x1-3x3-1x1, x4) or basic (3x3-3x3) block."""

    def __init__(self, kind: str, in_channels: int, filters: int, norm_cfg: dict,
                 act_cfg: dict, drop_path: float = 0.0):
        super().__init__()
        out_channels = filters * _EXPANSION[kind]
        if kind == "bottleneck":
            layers = [_conv(in_channels, filters, 1, norm_cfg, act_cfg),
                      _conv(filters, filters, 3, norm_cfg, act_cfg),
                      _conv(filters, out_channels, 1, norm_cfg, None)]
        else:
            layers = [_conv(in_channels, filters, 3, norm_cfg, act_cfg),
                      _conv(filters, filters, 3, norm_cfg, None)]
        self.branch = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else _conv(in_channels, out_channels, 1, norm_cfg, None))
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.act = build_activation_layer(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.branch(x)) + self.shortcut(x))


def _block_group(kind: str, in_channels: int, filters: int, repeats: int, norm_cfg: dict,
                 act_cfg: dict, drop_path: float = 0.0) -> nn.Sequential:
    out_channels = filters * _EXPANSION[kind]
    return nn.Sequential(*[
        _ResidualUnit(kind, in_channels if r == 0 else out_channels, filters,
                      norm_cfg, act_cfg, drop_path)
        for r in range(repeats)])


class _Resample(nn.Module):
    """Cross-scale connection: narrow, move ``shift`` levels, widen."""

    def __init__(self, in_channels: int, in_filters: int, shift: int, out_channels: int,
                 alpha: float, norm_cfg: dict, act_cfg: dict):
        super().__init__()
        mid = int(in_filters * alpha)
        self.reduce = _conv(in_channels, mid, 1, norm_cfg, act_cfg)
        down = []
        if shift > 0:
            down.append(_conv(mid, mid, 3, norm_cfg, act_cfg, stride=2))
            down += [nn.MaxPool2d(3, stride=2, padding=1) for _ in range(shift - 1)]
        self.down = nn.Sequential(*down)
        self.upsample = shift < 0
        self.expand = _conv(mid, out_channels, 1, norm_cfg, None)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.down(self.reduce(x))
        if self.upsample:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.expand(x)


class _Node(nn.Module):
    """One scale-permuted block: resample both parents, sum, act, block group."""

    def __init__(self, resamples: Sequence[_Resample], extra_inputs: Sequence[int],
                 block: nn.Sequential, act_cfg: dict):
        super().__init__()
        self.resample = nn.ModuleList(resamples)
        self.extra_inputs = tuple(extra_inputs)  # unused blocks summed as they are
        self.act = build_activation_layer(act_cfg)
        self.block = block

    def forward(self, parents: Sequence[torch.Tensor], extras: Sequence[torch.Tensor],
                size: tuple[int, int]) -> torch.Tensor:
        x = self.resample[0](parents[0], size) + self.resample[1](parents[1], size)
        for feat in extras:
            x = x + feat
        return self.block(self.act(x))


class _Stem(nn.Module):
    def __init__(self, filters: int, repeats: int, norm_cfg: dict, act_cfg: dict):
        super().__init__()
        self.conv = _conv(3, STEM_CHANNELS, 7, norm_cfg, act_cfg, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.blocks = nn.ModuleList([
            _block_group("bottleneck", STEM_CHANNELS if i == 0 else filters * 4, filters,
                         repeats, norm_cfg, act_cfg)
            for i in range(2)])

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.pool(self.conv(images))
        feats = []
        for group in self.blocks:
            x = group(x)
            feats.append(x)
        return feats


def _merged_unused_blocks(specs: Sequence[BlockSpec], channels: Sequence[int]
                          ) -> dict[int, tuple[int, ...]]:
    """For each output block, the earlier blocks of out-degree 0 it absorbs."""
    outdegree = [0] * len(specs)
    merged: dict[int, tuple[int, ...]] = {}
    for k, spec in enumerate(specs):
        for p in spec.parents:
            outdegree[p] += 1
        if spec.is_output:
            extra = tuple(j for j in range(k) if outdegree[j] == 0
                          and specs[j].level == spec.level and channels[j] == channels[k])
            for j in extra:
                outdegree[j] += 1
            merged[k] = extra
    return merged


class SpineNet(Backbone):
    """SpineNet-49S/49/96/143/190 returning P3-P7 (strides 8, 16, 32, 64, 128).

    Args:
        arch: ``'49S'``, ``'49'``, ``'96'``, ``'143'`` or ``'190'``.
        out_indices: which of (P3, P4, P5, P6, P7) to return (index ``i`` is
            level ``i + 3``). Blocks that feed none of them are not built.
        frozen_stages: ``0`` freezes the stem (7x7 conv and the two L2
            blocks); ``-1`` freezes nothing. There are no later stages.
        norm_eval: keep BatchNorm layers in eval mode while training.
        norm_cfg: mmcv norm config; the default mirrors TF's BN (momentum
            0.99 -> 0.01 here, eps 1e-3).
        act_cfg: activation; ReLU as in the paper (the authors' longer
            schedules use ``dict(type='Swish')``).
        drop_path_rate: stochastic depth of the last scale-permuted block;
            block ``k`` of ``n`` gets ``rate * (k + 1) / n`` (stem: none).
    """

    size_divisor = 128

    def __init__(self, arch: str = "49", out_indices: Sequence[int] = (0, 1, 2, 3, 4),
                 frozen_stages: int = -1, norm_eval: bool = False,
                 norm_cfg: dict | None = None, act_cfg: dict | None = None,
                 drop_path_rate: float = 0.0, init_cfg=None):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        key = str(arch).upper()
        if key not in SCALING:
            raise ValueError(f"SpineNet: arch must be one of {sorted(SCALING)}, got {arch!r}")
        out_indices = tuple(out_indices)
        if (not out_indices or len(set(out_indices)) != len(out_indices)
                or any(not isinstance(i, int) or not 0 <= i < len(OUTPUT_LEVELS)
                       for i in out_indices)):
            raise ValueError("SpineNet: out_indices must be distinct integers in 0..4 "
                             f"(P3..P7), got {out_indices!r}")
        if frozen_stages not in (-1, 0):
            raise ValueError("SpineNet: frozen_stages must be -1 (nothing) or 0 (the stem); "
                             f"it has no later stages, got {frozen_stages!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"SpineNet: drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
        norm_cfg = dict(type="BN", momentum=0.01, eps=1e-3) if norm_cfg is None else norm_cfg
        act_cfg = dict(type="ReLU") if act_cfg is None else act_cfg

        self.arch = key
        scaling = SCALING[key]
        self.specs = SPINENET_BLOCKS
        self.out_indices = out_indices
        self.out_levels = tuple(OUTPUT_LEVELS[i] for i in out_indices)

        filters = [int(LEVEL_FILTERS[s.level] * scaling.filter_size_scale) for s in self.specs]
        channels = [f * _EXPANSION[s.block] for f, s in zip(filters, self.specs)]
        merged = _merged_unused_blocks(self.specs, channels)
        self.output_block = {s.level: k for k, s in enumerate(self.specs) if s.is_output}

        # Keep only the blocks the requested outputs depend on.
        needed, todo = set(), [self.output_block[lvl] for lvl in self.out_levels]
        while todo:
            k = todo.pop()
            if k not in needed:
                needed.add(k)
                todo += list(self.specs[k].parents) + list(merged.get(k, ()))

        self.stem = _Stem(filters[0], scaling.block_repeats, norm_cfg, act_cfg)
        num_permuted = sum(1 for s in self.specs if s.parents)
        self.nodes = nn.ModuleDict()
        for k, spec in enumerate(self.specs):
            if not spec.parents or k not in needed:
                continue
            resamples = [
                _Resample(channels[p], filters[p], spec.level - self.specs[p].level,
                          channels[k], scaling.resample_alpha, norm_cfg, act_cfg)
                for p in spec.parents]
            order = k - (len(self.specs) - num_permuted)
            drop = drop_path_rate * (order + 1) / num_permuted
            block = _block_group(spec.block, channels[k], filters[k], scaling.block_repeats,
                                 norm_cfg, act_cfg, drop)
            self.nodes[str(k)] = _Node(resamples, merged.get(k, ()), block, act_cfg)
        self.endpoints = nn.ModuleDict({
            str(lvl): _conv(channels[self.output_block[lvl]], scaling.endpoints_num_filters, 1,
                            norm_cfg, act_cfg)
            for lvl in self.out_levels})

        self.declare_outputs((scaling.endpoints_num_filters,) * len(self.out_levels),
                             [2 ** lvl for lvl in self.out_levels])
        if frozen_stages >= 0:
            self.freeze_stages()

    def stages(self) -> list[nn.Module]:
        return [self.stem]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError("SpineNet: images must be a [B, 3, H, W] tensor, "
                             f"got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        sizes = {lvl: (math.ceil(height / 2 ** lvl), math.ceil(width / 2 ** lvl))
                 for lvl in LEVEL_FILTERS}

        feats = dict(enumerate(self.stem(images)))
        for key, node in self.nodes.items():
            spec = self.specs[int(key)]
            feats[int(key)] = node([feats[p] for p in spec.parents],
                                   [feats[j] for j in node.extra_inputs], sizes[spec.level])
        return tuple(self.endpoints[str(lvl)](feats[self.output_block[lvl]])
                     for lvl in self.out_levels)
