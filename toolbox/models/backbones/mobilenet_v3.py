"""MobileNetV3 (Howard et al., "Searching for MobileNetV3", ICCV 2019).

Inverted residual blocks (1x1 expansion, depthwise conv, optional
squeeze-excitation with a hard-sigmoid gate, linear 1x1 projection) with ReLU
or h-swish, exactly as in the paper's Tables 1 (Large) and 2 (Small) and in
torchvision's ``mobilenet_v3_large`` / ``mobilenet_v3_small``.

Outputs, like torchvision's detection extractors, are taken at the last layer
of each resolution:

=========  ======  ==========================  ==========================
out index  stride  Large (width 1.0)           Small (width 1.0)
=========  ======  ==========================  ==========================
0          4       ``features[3]``, 24 ch      ``features[1]``, 16 ch
1          8       ``features[6]``, 40 ch      ``features[3]``, 24 ch
2          16      ``features[12]``, 112 ch    ``features[8]``, 48 ch
3          32      ``features[16]``, 960 ch    ``features[12]``, 576 ch
=========  ======  ==========================  ==========================

(indices into torchvision's ``features``). The stride-32 output is the
final 1x1 expansion conv (``features[-1]``, what torchvision's
``fasterrcnn_mobilenet_v3_large_fpn`` feeds its FPN), so the backbone holds
every weight of torchvision's ``features``.

Stages (for ``frozen_stages``): the stem (stride-2 conv) is stage 0 and stage
``i`` (1..4) holds the layers ending at output ``i - 1`` (Large's first
block, still at stride 2, joins stage 1). Stages after the last requested
output are not built (as in detectron2 and timm).

Layers are plain ``Conv2d -> BatchNorm2d -> activation`` sequences, so
``mmcv.cnn.fuse_conv_bn`` folds every BatchNorm into its conv.

``taps='stage_start'`` returns instead what torchvision's detection
extractor (``_mobilenet_extractor``) can return: its ``stage_indices``, the
stem, the first (strided) block of each resolution and the final conv:

=========  ======  ==========================  ==========================
out index  stride  Large                       Small
=========  ======  ==========================  ==========================
0          2       ``features[0]``, 16 ch      ``features[0]``, 16 ch
1          4       ``features[2]``, 24 ch      ``features[1]``, 16 ch
2          8       ``features[4]``, 40 ch      ``features[2]``, 24 ch
3          16      ``features[7]``, 80 ch      ``features[4]``, 40 ch
4          32      ``features[13]``, 160 ch    ``features[9]``, 96 ch
5          32      ``features[16]``, 960 ch    ``features[12]``, 576 ch
=========  ======  ==========================  ==========================

so ``out_indices=(4, 5)`` is ``fasterrcnn_mobilenet_v3_large_fpn``'s
backbone (its ``returned_layers``), with ``norm='FrozenBN'`` (eps 1e-5) as
torchvision builds it for pretrained weights.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from toolbox.models.backbones.base import (Backbone, check_frozen_stages, check_out_indices,
                                           init_like_torchvision)

__all__ = ["MobileNetV3"]

# Per block: (kernel, expanded channels, out channels, squeeze-excitation,
# activation 'RE' = ReLU / 'HS' = h-swish, stride), paper Tables 1 and 2.
_ARCHS = {
    "large": (
        (3, 16, 16, False, "RE", 1),
        (3, 64, 24, False, "RE", 2),
        (3, 72, 24, False, "RE", 1),
        (5, 72, 40, True, "RE", 2),
        (5, 120, 40, True, "RE", 1),
        (5, 120, 40, True, "RE", 1),
        (3, 240, 80, False, "HS", 2),
        (3, 200, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1),
        (3, 480, 112, True, "HS", 1),
        (3, 672, 112, True, "HS", 1),
        (5, 672, 160, True, "HS", 2),
        (5, 960, 160, True, "HS", 1),
        (5, 960, 160, True, "HS", 1),
    ),
    "small": (
        (3, 16, 16, True, "RE", 2),
        (3, 72, 24, False, "RE", 2),
        (3, 88, 24, False, "RE", 1),
        (5, 96, 40, True, "HS", 2),
        (5, 240, 40, True, "HS", 1),
        (5, 240, 40, True, "HS", 1),
        (5, 120, 48, True, "HS", 1),
        (5, 144, 48, True, "HS", 1),
        (5, 288, 96, True, "HS", 2),
        (5, 576, 96, True, "HS", 1),
        (5, 576, 96, True, "HS", 1),
    ),
}
_STEM_CHANNELS = 16
_LAST_CONV_EXPANSION = 6  # final 1x1 conv: 6x the last block's channels
_NUM_OUTPUTS = 4
_TAPS = ("stage_end", "stage_start")
# BatchNorm as in the paper's TF training (decay 0.99) and in torchvision.
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, at least
    ``divisor`` and never more than 10% below ``value`` (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _activation(name: str | None) -> nn.Module | None:
    if name is None:
        return None
    return nn.Hardswish(inplace=True) if name == "HS" else nn.ReLU(inplace=True)


class ConvNormAct(nn.Sequential):
    """``Conv2d`` (no bias, 'same' padding) -> ``BatchNorm2d`` -> activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, groups: int = 1, act: str | None = None, norm=None):
        norm = norm or (lambda c: nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM))
        layers = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                           padding=(kernel_size - 1) // 2, groups=groups, bias=False),
            bn=norm(out_channels))
        if act is not None:
            layers["act"] = _activation(act)
        super().__init__(layers)


class SqueezeExcite(nn.Module):
    """Channel gate: global average -> 1x1 reduce -> ReLU -> 1x1 expand ->
    hard-sigmoid, multiplied into the input."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(scale))))


class InvertedResidual(nn.Sequential):
    """expand (skipped when it would be the identity width) -> depthwise ->
    SE (optional) -> linear project, plus the input when shapes allow."""

    def __init__(self, in_channels: int, kernel: int, expanded: int, out_channels: int,
                 use_se: bool, act: str, stride: int, norm=None):
        layers = OrderedDict()
        if expanded != in_channels:
            layers["expand"] = ConvNormAct(in_channels, expanded, 1, act=act, norm=norm)
        layers["depthwise"] = ConvNormAct(expanded, expanded, kernel, stride,
                                          groups=expanded, act=act, norm=norm)
        if use_se:
            layers["se"] = SqueezeExcite(expanded, make_divisible(expanded // 4))
        layers["project"] = ConvNormAct(expanded, out_channels, 1, norm=norm)
        super().__init__(layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + x if self.use_residual else out


class MobileNetV3(Backbone):
    """MobileNetV3-Large/Small returning the maps at strides 4, 8, 16, 32.

    Args:
        arch: ``'large'`` or ``'small'``.
        width_mult: channel multiplier; every width is rounded to a multiple
            of 8 (:func:`make_divisible`), as in the paper and torchvision.
        out_indices: which outputs to return: of the 4 (strides 4/8/16/32)
            with ``taps='stage_end'``, of the 6 with ``'stage_start'``.
        frozen_stages: freeze the stem (0) and stages ``1..frozen_stages``;
            -1 freezes nothing.
        norm_eval: keep every BatchNorm in eval mode during training.
        taps: ``'stage_end'`` (default): each output is the last layer of its
            resolution; ``'stage_start'``: torchvision's detection stage
            indices (module docstring), e.g. ``out_indices=(4, 5)`` for
            ``fasterrcnn_mobilenet_v3_large_fpn``.
        norm: ``'BN'`` (``BatchNorm2d``, eps 1e-3, momentum 0.01) or
            ``'FrozenBN'`` (``torchvision.ops.FrozenBatchNorm2d``, what
            torchvision's detection models use with pretrained weights).
        norm_eps: the norm layers' ``eps`` (None: 1e-3 for ``'BN'``, 1e-5
            for ``'FrozenBN'``, torchvision's values).
    """

    def __init__(self, arch: str = "large", width_mult: float = 1.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_eval: bool = False, taps: str = "stage_end", norm: str = "BN",
                 norm_eps: float | None = None, init_cfg=None):
        if arch not in _ARCHS:
            raise ValueError(f"MobileNetV3: arch must be one of {sorted(_ARCHS)}, got {arch!r}")
        if taps not in _TAPS:
            raise ValueError(f"MobileNetV3: taps must be one of {_TAPS}, got {taps!r}")
        if norm not in ("BN", "FrozenBN"):
            raise ValueError(f"MobileNetV3: norm must be 'BN' or 'FrozenBN', got {norm!r}")
        if norm_eps is not None and (isinstance(norm_eps, bool)
                                     or not isinstance(norm_eps, (int, float)) or norm_eps < 0):
            raise ValueError(f"MobileNetV3: norm_eps must be a number >= 0 or None, "
                             f"got {norm_eps!r}")
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) \
                or width_mult <= 0:
            raise ValueError(f"MobileNetV3: width_mult must be a positive number, "
                             f"got {width_mult!r}")
        num_taps = _NUM_OUTPUTS if taps == "stage_end" else _NUM_OUTPUTS + 2
        out_indices = check_out_indices(out_indices, num_taps, "MobileNetV3",
                                        f" (taps={taps!r})")
        check_frozen_stages(frozen_stages, _NUM_OUTPUTS, "MobileNetV3")
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        self.arch = arch
        self.width_mult = width_mult
        self.out_indices = out_indices
        self.taps = taps
        self.norm = norm
        if norm == "BN":
            eps = _BN_EPS if norm_eps is None else float(norm_eps)
            norm_layer = lambda c: nn.BatchNorm2d(c, eps=eps, momentum=_BN_MOMENTUM)  # noqa: E731
        else:
            eps = 1e-5 if norm_eps is None else float(norm_eps)
            norm_layer = lambda c: FrozenBatchNorm2d(c, eps=eps)  # noqa: E731

        def width(channels: int) -> int:
            return make_divisible(channels * width_mult)

        in_ch = width(_STEM_CHANNELS)
        self.stem = ConvNormAct(3, in_ch, 3, stride=2, act="HS", norm=norm_layer)
        # 'stage_start' taps: (stage index or -1 for the stem, layer name, channels, stride)
        tap_points = [(-1, None, in_ch, 2)]
        # Stage i + 1 holds the blocks whose output has stride 2 ** (i + 2);
        # Large's first block (still at stride 2) joins stage 1.
        stage_blocks: list[list[nn.Module]] = [[] for _ in range(_NUM_OUTPUTS)]
        stage_widths = [0] * _NUM_OUTPUTS
        total_stride = 2
        for kernel, expanded, out, use_se, act, stride in _ARCHS[arch]:
            total_stride *= stride
            stage = max(0, total_stride.bit_length() - 3)  # stride 4 -> 0, ..., 32 -> 3
            block = InvertedResidual(in_ch, kernel, width(expanded), width(out), use_se, act,
                                     stride, norm=norm_layer)
            if stride > 1:
                tap_points.append((stage, str(len(stage_blocks[stage])), width(out),
                                   total_stride))
            stage_blocks[stage].append(block)
            in_ch = stage_widths[stage] = width(out)
        last_width = _LAST_CONV_EXPANSION * in_ch
        stage_widths[-1] = last_width
        tap_points.append((_NUM_OUTPUTS - 1, "last_conv", last_width, 2 ** (_NUM_OUTPUTS + 1)))
        if taps == "stage_start":
            self._taps = tuple(tap_points[i][:2] for i in out_indices)
            self.num_stages = max(max(t[0] for t in self._taps) + 1, 1)
        else:
            self._taps = None
            self.num_stages = max(out_indices) + 1  # stages after the last output: not built

        for stage_index in range(self.num_stages):
            layers = OrderedDict((str(i), b) for i, b in enumerate(stage_blocks[stage_index]))
            if stage_index == _NUM_OUTPUTS - 1:
                layers["last_conv"] = ConvNormAct(in_ch, last_width, 1, act="HS",
                                                  norm=norm_layer)
            self.add_module(f"stage{stage_index + 1}", nn.Sequential(layers))
        # (qualified name, layer names) of every block of the arch, built or
        # not, in torchvision's ``features`` order: the key mapping reads it.
        self._block_layout = tuple(
            (f"stage{s + 1}.{i}", tuple(name for name, _ in block.named_children()))
            for s, blocks in enumerate(stage_blocks) for i, block in enumerate(blocks))

        stage_names = [f"stage{i + 1}" for i in range(self.num_stages)]
        if self._taps is None:
            self._declare_stage_chain(stage_names, out_indices, stage_widths,
                                      [2 ** (i + 2) for i in range(_NUM_OUTPUTS)])
        else:
            self._declare_stage_chain(stage_names, (self.num_stages - 1,), stage_widths,
                                      [2 ** (i + 2) for i in range(_NUM_OUTPUTS)])
            strides = [tap_points[i][3] for i in out_indices]
            self.declare_outputs([tap_points[i][2] for i in out_indices], strides,
                                 size_divisor=max(strides))
        init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._taps is None:
            return self._forward_stage_chain(x)
        x = self.stem(x)
        wanted = set(self._taps)
        found = {(-1, None): x} if (-1, None) in wanted else {}
        for index, name in enumerate(self._stage_names):
            for layer_name, layer in getattr(self, name).named_children():
                x = layer(x)
                if (index, layer_name) in wanted:
                    found[(index, layer_name)] = x
        return tuple(found[t] for t in self._taps)

    # -- torchvision weights -------------------------------------------------
    def reference_key_map(self) -> dict[str, str | None]:
        """torchvision module path -> this module's path (None: a layer of a
        stage that is not built)."""
        mapping = {"features.0.0": "stem.conv", "features.0.1": "stem.bn"}
        for index, (name, parts) in enumerate(self._block_layout):
            for position, part in enumerate(parts):  # torchvision's ``block`` Sequential
                tv = f"features.{index + 1}.block.{position}"
                if part == "se":
                    mapping[f"{tv}.fc1"] = f"{name}.se.reduce"
                    mapping[f"{tv}.fc2"] = f"{name}.se.expand"
                else:
                    mapping[f"{tv}.0"] = f"{name}.{part}.conv"
                    mapping[f"{tv}.1"] = f"{name}.{part}.bn"
        last = len(self._block_layout) + 1
        mapping[f"features.{last}.0"] = f"stage{_NUM_OUTPUTS}.last_conv.conv"
        mapping[f"features.{last}.1"] = f"stage{_NUM_OUTPUTS}.last_conv.bn"
        built = {"stem", *self._stage_names}
        return {k: (v if v.partition(".")[0] in built else None) for k, v in mapping.items()}

    def convert_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor]
                                      ) -> "OrderedDict[str, torch.Tensor]":
        """Rename a torchvision ``mobilenet_v3_{large,small}`` state dict.

        The classifier and the layers of stages that were not built are
        dropped; any other unknown key is an error.
        """
        module_map = {**self.reference_key_map(), "classifier": None}
        return self._rename_reference_keys(state_dict, module_map,
                                           f"torchvision mobilenet_v3_{self.arch}")
