"""VGG-16 as laid out by RefineDet (Zhang et al., CVPR 2018) on SSD's atrous VGG.

The 13 conv layers of VGG-16 (pool3 in ceil mode), then RefineDet's
fully-convolutional head and extra stage:

* ``pool5``: 2x2 max-pool, stride 2 (SSD instead uses 3x3 stride 1);
* ``fc6``: 3x3 conv, 1024 channels, dilation 3 (SSD: dilation 6 after its
  stride-1 pool5); ``fc7``: 1x1 conv, 1024 channels;
* ``conv6_1``: 1x1 conv, 256 channels; ``conv6_2``: 3x3 conv stride 2, 512.

Outputs (out index: layer, stride, channels): 0: conv4_3, 8, 512;
1: conv5_3, 16, 512; 2: fc7, 32, 1024; 3: conv6_2, 64, 512 -- RefineDet's
four ARM sources. conv4_3 and conv5_3 (after ReLU) are L2-normalised over
channels with a learnable per-channel scale, initialised to 10 and 8 as in
RefineDet (SSD uses 20 on conv4_3); ``l2_norm_scales`` changes or disables
them.

Stages (for ``frozen_stages``): stem = conv1_1..pool3 (stride 8), then
stage1 = conv4_x, stage2 = pool4 + conv5_x, stage3 = pool5 + fc6 + fc7,
stage4 = conv6_x; stages after the last requested output are not built.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from toolbox.models.backbones.base import (Backbone, check_frozen_stages, check_out_indices,
                                           init_like_torchvision)

__all__ = ["VGG"]

# (block, number of 3x3 convs, channels) of VGG-16; a 2x2 max-pool follows
# each block in torchvision's ``features``.
_VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
_NUM_OUTPUTS = 4
_OUT_STRIDES = (8, 16, 32, 64)
_OUT_CHANNELS = (512, 512, 1024, 512)
# SSD's reduced fc6/fc7: keep every 4th unit and every 3rd tap of fc6's 7x7
# window (then dilated by 3), as in SSD's VGG_ILSVRC_16_layers_fc_reduced.
_FC_UNIT_STEP, _FC6_TAP_STEP = 4, 3


class L2Norm(nn.Module):
    """Normalise each position's channel vector to unit L2 norm, then scale
    it by a learnable per-channel weight (ParseNet; SSD's conv4_3_norm)."""

    def __init__(self, channels: int, scale: float, eps: float = 1e-10):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1, eps=self.eps) * self.weight.view(1, -1, 1, 1)


def _conv_layers(name: str, in_channels: int, out_channels: int, norm: str | None,
                 kernel_size: int = 3, stride: int = 1, padding: int = 1, dilation: int = 1
                 ) -> list[tuple[str, nn.Module]]:
    """``name``: conv (with bias, like torchvision's VGG), ``name_bn``: optional
    BatchNorm, ``name_relu``: ReLU."""
    layers = [(name, nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                               dilation))]
    if norm == "BN":
        layers.append((f"{name}_bn", nn.BatchNorm2d(out_channels)))
    layers.append((f"{name}_relu", nn.ReLU(inplace=True)))
    return layers


class VGG(Backbone):
    """RefineDet's VGG-16: conv4_3, conv5_3, fc7 and conv6_2 (strides 8..64).

    Args:
        depth: 16 (the only depth RefineDet and SSD use).
        out_indices: which of conv4_3, conv5_3, fc7, conv6_2 (0..3) to return.
        frozen_stages: freeze the stem (conv1..conv3, 0) and stages
            ``1..frozen_stages``; -1 freezes nothing.
        norm_eval: keep every BatchNorm in eval mode during training.
        norm: None (the original) or ``'BN'`` (BatchNorm after every conv,
            loadable from torchvision's ``vgg16_bn``).
        l2_norm_scales: initial L2Norm scales of conv4_3 and conv5_3; None (as
            a whole or per entry) returns that map un-normalised.
    """

    def __init__(self, depth: int = 16, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, norm: str | None = None,
                 l2_norm_scales: Sequence[float | None] | None = (10.0, 8.0), init_cfg=None):
        if depth != 16:
            raise ValueError(f"VGG: only depth=16 is implemented, got {depth!r}")
        if norm not in (None, "BN"):
            raise ValueError(f"VGG: norm must be None or 'BN', got {norm!r}")
        out_indices = check_out_indices(out_indices, _NUM_OUTPUTS, "VGG")
        check_frozen_stages(frozen_stages, _NUM_OUTPUTS, "VGG")
        scales = (None, None) if l2_norm_scales is None else tuple(l2_norm_scales)
        if len(scales) != 2 or any(s is not None and not (isinstance(s, (int, float))
                                                           and s > 0) for s in scales):
            raise ValueError("VGG: l2_norm_scales must be None or two positive numbers (or None) "
                             f"for conv4_3 and conv5_3, got {l2_norm_scales!r}")
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        self.depth = depth
        self.norm = norm
        self.out_indices = out_indices
        self.num_stages = max(out_indices) + 1  # stages after the last output are not built

        stages: list[list[tuple[str, nn.Module]]] = [[] for _ in range(_NUM_OUTPUTS + 1)]
        in_channels = 3
        for block, num_convs, channels in _VGG16_BLOCKS:
            stage = stages[max(0, block - 3)]  # blocks 1..3 -> stem, 4 -> 1, 5 -> 2
            if block == 5:
                stage.append(("pool4", nn.MaxPool2d(2, 2)))
            for i in range(1, num_convs + 1):
                stage += _conv_layers(f"conv{block}_{i}", in_channels, channels, norm)
                in_channels = channels
            if block < 4:  # pool3 in ceil mode (SSD300: 75 -> 38)
                stage.append((f"pool{block}", nn.MaxPool2d(2, 2, ceil_mode=block == 3)))
        stages[3] += [("pool5", nn.MaxPool2d(2, 2))]
        stages[3] += _conv_layers("fc6", 512, 1024, norm, padding=3, dilation=3)
        stages[3] += _conv_layers("fc7", 1024, 1024, norm, kernel_size=1, padding=0)
        stages[4] += _conv_layers("conv6_1", 1024, 256, norm, kernel_size=1, padding=0)
        stages[4] += _conv_layers("conv6_2", 256, 512, norm, stride=2)

        self.stem = nn.Sequential(OrderedDict(stages[0]))
        for index in range(1, self.num_stages + 1):
            self.add_module(f"stage{index}", nn.Sequential(OrderedDict(stages[index])))
        # One module per built stage applied to its output (L2Norm or Identity).
        self.output_norms = nn.ModuleList(
            L2Norm(_OUT_CHANNELS[i], scales[i]) if i < 2 and scales[i] is not None
            else nn.Identity() for i in range(self.num_stages))

        self._declare_stage_chain([f"stage{i + 1}" for i in range(self.num_stages)], out_indices,
                                  _OUT_CHANNELS, _OUT_STRIDES)
        init_like_torchvision(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._forward_stage_chain(x, self.output_norms)

    # -- torchvision weights -------------------------------------------------
    def reference_key_map(self) -> dict[str, str | None]:
        """torchvision ``vgg16``/``vgg16_bn`` ``features`` index -> this module's
        path (None: a layer of a stage that is not built)."""
        mapping: dict[str, str | None] = {}
        built = {"stem", *self._stage_names}
        index = 0
        for block, num_convs, _ in _VGG16_BLOCKS:
            stage = "stem" if block <= 3 else f"stage{block - 3}"
            for i in range(1, num_convs + 1):
                mapping[f"features.{index}"] = f"{stage}.conv{block}_{i}"
                if self.norm == "BN":
                    mapping[f"features.{index + 1}"] = f"{stage}.conv{block}_{i}_bn"
                index += 3 if self.norm == "BN" else 2  # conv, [bn,] relu
            index += 1  # max-pool
        return {k: (v if v.partition(".")[0] in built else None) for k, v in mapping.items()}

    def convert_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor]
                                      ) -> "OrderedDict[str, torch.Tensor]":
        """Rename a torchvision ``vgg16`` (``norm=None``) or ``vgg16_bn``
        (``norm='BN'``) state dict.

        The 13 convs are renamed (``features.21`` -> ``stage1.conv4_3``, ...).
        When fc6/fc7 are built, torchvision's ``classifier.0`` / ``classifier.3``
        become them through SSD's reduction (every 4th unit; every 3rd tap of
        the 7x7 window). Layers the reference lacks (L2Norm scales, conv6_x,
        BatchNorms of fc6/fc7; fc6/fc7 without a classifier) keep this
        module's current values. An unknown key is an error.
        """
        module_map = self.reference_key_map()
        renamed = self._rename_reference_keys(state_dict, {**module_map, "classifier": None},
                                              f"torchvision vgg16{'_bn' if self.norm else ''}")
        from_reference = {v for v in module_map.values() if v is not None}
        if self.num_stages >= 3 and "classifier.0.weight" in state_dict:
            renamed.update(_reduce_fc(state_dict))
            from_reference |= {"stage3.fc6", "stage3.fc7"}
        for key, value in self.state_dict().items():  # layers the reference lacks
            if key.rpartition(".")[0] not in from_reference:
                renamed[key] = value
        return renamed


def _reduce_fc(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SSD's subsampling of VGG's fc6 (4096 x 512*7*7) and fc7 (4096 x 4096)
    into the 3x3 dilated fc6 conv and the 1x1 fc7 conv (1024 channels)."""
    step, tap = _FC_UNIT_STEP, _FC6_TAP_STEP
    fc6 = state_dict["classifier.0.weight"].reshape(-1, 512, 7, 7)
    fc7 = state_dict["classifier.3.weight"]
    return {
        "stage3.fc6.weight": fc6[::step, :, ::tap, ::tap].contiguous(),
        "stage3.fc6.bias": state_dict["classifier.0.bias"][::step].contiguous(),
        "stage3.fc7.weight": fc7[::step, ::step, None, None].contiguous(),
        "stage3.fc7.bias": state_dict["classifier.3.bias"][::step].contiguous(),
    }
