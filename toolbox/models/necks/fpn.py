"""Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object
Detection", CVPR 2017), with RetinaNet's extra P6/P7 levels.

Inputs ``C_i`` (finest first) go through 1x1 lateral convs; a top-down pass
adds each coarser lateral, upsampled to the *exact* size of the finer one (so
odd sizes work), and 3x3 convs smooth the sums into ``P_i``. Levels beyond the
backbone's are made by a stride-2 max-pool of the last output
(``add_extra_convs=False``, Faster R-CNN's P6) or by stride-2 3x3 convs whose
first one reads the last used backbone map (``'on_input'``, RetinaNet), its
lateral (``'on_lateral'``) or its output (``'on_output'``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from toolbox.models.necks.base import Neck
from toolbox.structures.feature_spec import FeatureSpec

__all__ = ["FPN"]

_EXTRA_SOURCES = ("on_input", "on_lateral", "on_output")
_UPSAMPLE_MODES = ("nearest", "bilinear")


def _positive_int_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, int) or not isinstance(value, Sequence) or not value or any(
            not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in value):
        raise ValueError(f"FPN: '{name}' must be a non-empty tuple of positive ints, "
                         f"got {value!r}")
    return tuple(value)


class FPN(Neck):
    """Top-down feature pyramid with optional extra coarse levels.

    Args:
        in_channels: channels of each input map, finest first.
        out_channels: channels of every output map (required).
        in_strides: stride of each input map (same length as ``in_channels``).
        start_level: first input used (e.g. 1 to skip C2).
        end_level: last input used, inclusive; -1 means the last one.
        num_outs: number of outputs; defaults to the number of used inputs.
            More outputs than used inputs adds extra levels (only allowed
            when ``end_level`` is the last input).
        add_extra_convs: ``False`` makes extra levels by max-pool (kernel 1,
            stride 2); ``'on_input'`` / ``'on_lateral'`` / ``'on_output'``
            by stride-2 3x3 convs whose first one reads the last used input,
            its lateral, or its output (``True`` means ``'on_input'``).
        relu_before_extra_convs: apply ReLU before every extra conv but the
            first (RetinaNet in torchvision does this before P7).
        upsample_mode: ``'nearest'`` or ``'bilinear'`` for the top-down pass.
        norm_cfg, act_cfg: mmcv configs for every conv (default: none).
        input_shape: the previous part's ``output_shape()`` (what detectors
            pass); instead of, or agreeing with, ``in_channels`` / ``in_strides``.
    """

    def __init__(self, in_channels: Sequence[int] | None = None, out_channels: int | None = None,
                 in_strides: Sequence[int] | None = None, start_level: int = 0,
                 end_level: int = -1, num_outs: int | None = None,
                 add_extra_convs: bool | str = False, relu_before_extra_convs: bool = False,
                 upsample_mode: str = "nearest", norm_cfg: dict | None = None,
                 act_cfg: dict | None = None,
                 init_cfg=dict(type="Xavier", layer="Conv2d", distribution="uniform"),
                 input_shape: Sequence[FeatureSpec] | None = None):
        super().__init__(init_cfg=init_cfg)
        in_channels, in_strides = self.resolve_inputs(input_shape, in_channels, in_strides)
        in_channels = _positive_int_tuple(in_channels, "in_channels")
        in_strides = _positive_int_tuple(in_strides, "in_strides")
        if len(in_strides) != len(in_channels):
            raise ValueError(f"FPN: 'in_strides' {in_strides} must have one entry per "
                             f"'in_channels' {in_channels}")
        if not isinstance(out_channels, int) or isinstance(out_channels, bool) \
                or out_channels <= 0:
            raise ValueError(f"FPN: 'out_channels' must be a positive int, got {out_channels!r}")
        num_ins = len(in_channels)
        if not 0 <= start_level < num_ins:
            raise ValueError(f"FPN: 'start_level' must be in [0, {num_ins - 1}] for "
                             f"{num_ins} inputs, got {start_level}")
        if end_level == -1:
            end_level = num_ins - 1
        if not start_level <= end_level < num_ins:
            raise ValueError(f"FPN: 'end_level' must be -1 or in [{start_level}, "
                             f"{num_ins - 1}], got {end_level}")
        num_used = end_level - start_level + 1
        if num_outs is None:
            num_outs = num_used
        if num_outs < num_used:
            raise ValueError(f"FPN: 'num_outs' must be at least the {num_used} used "
                             f"inputs (levels {start_level}..{end_level}), got {num_outs}")
        if num_outs > num_used and end_level != num_ins - 1:
            raise ValueError(f"FPN: extra levels (num_outs={num_outs} > {num_used} used "
                             f"inputs) need 'end_level' to be the last input (-1)")
        if add_extra_convs is True:
            add_extra_convs = "on_input"
        if add_extra_convs is not False and add_extra_convs not in _EXTRA_SOURCES:
            raise ValueError(f"FPN: 'add_extra_convs' must be False or one of "
                             f"{_EXTRA_SOURCES}, got {add_extra_convs!r}")
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(f"FPN: 'upsample_mode' must be one of {_UPSAMPLE_MODES}, "
                             f"got {upsample_mode!r}")

        self.in_channels = in_channels
        self.in_strides = in_strides
        self.start_level = start_level
        self.end_level = end_level
        self.num_outs = num_outs
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.upsample_mode = upsample_mode

        def conv(cin: int, kernel: int, stride: int = 1) -> ConvModule:
            return ConvModule(cin, out_channels, kernel, stride=stride, padding=kernel // 2,
                              norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False)

        used = range(start_level, end_level + 1)
        self.lateral_convs = nn.ModuleList(conv(in_channels[i], 1) for i in used)
        self.fpn_convs = nn.ModuleList(conv(out_channels, 3) for _ in used)
        num_extra = num_outs - num_used
        self.extra_convs = nn.ModuleList()
        if add_extra_convs:
            first_in = in_channels[end_level] if add_extra_convs == "on_input" else out_channels
            for k in range(num_extra):
                self.extra_convs.append(conv(first_in if k == 0 else out_channels, 3, 2))

        strides = list(in_strides[start_level:end_level + 1])
        for _ in range(num_extra):
            strides.append(strides[-1] * 2)
        self.declare_outputs((out_channels,) * num_outs, strides)

    def _upsample(self, x: Tensor, size: torch.Size) -> Tensor:
        if self.upsample_mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=size, mode="nearest")

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"FPN: expected {len(self.in_channels)} input maps "
                             f"(in_channels={self.in_channels}), got {len(inputs)}")
        for i, (x, c) in enumerate(zip(inputs, self.in_channels)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(f"FPN: input {i} must be [B, {c}, H, W], "
                                 f"got {tuple(x.shape)}")
        used = inputs[self.start_level:self.end_level + 1]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, used)]
        # Top-down: each level receives the (already merged) coarser one.
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._upsample(laterals[i],
                                                                laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]

        num_extra = self.num_outs - len(outs)
        if num_extra and not self.add_extra_convs:
            for _ in range(num_extra):
                outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        elif num_extra:
            source = {"on_input": used[-1], "on_lateral": laterals[-1],
                      "on_output": outs[-1]}[self.add_extra_convs]
            outs.append(self.extra_convs[0](source))
            for conv in self.extra_convs[1:]:
                x = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
                outs.append(conv(x))
        return tuple(outs)
