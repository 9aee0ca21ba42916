"""ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

The torchvision variant ("ResNet v1.5": the stride of a bottleneck sits on its
3x3 conv), returning C2..C5 at strides 4, 8, 16, 32. ``dilate_c5=True`` is
DETR's DC5 variant: C5 keeps stride 16 and its 3x3 convs are dilated by 2
(torchvision's ``replace_stride_with_dilation=[False, False, True]``).

Stages: the stem (7x7 conv, BN, ReLU, max-pool) is stage 0 and ``layer1``..
``layer4`` are stages 1..4; stages after the last requested output are not
built. Module names follow torchvision's (``layer1.0.conv1``, ...), except the
stem's ``conv1`` / ``bn1``, which live in ``stem.conv`` / ``stem.bn``.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from toolbox.models.backbones.base import (Backbone, check_frozen_stages, check_out_indices,
                                           init_like_torchvision)

__all__ = ["ResNet"]

_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "BN": nn.BatchNorm2d,
    "FrozenBN": FrozenBatchNorm2d,  # affine + statistics as buffers (DETR)
}


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int,
                 norm: Callable[[int], nn.Module], downsample: nn.Module | None):
        super().__init__()  # ``dilation`` must be 1 (ResNet checks dilate_c5)
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, padding=1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision: one tensor less per block
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, dilation) -> 1x1 expand (ResNet-50/101/152)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int,
                 norm: Callable[[int], nn.Module], downsample: nn.Module | None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as torchvision: one tensor less per block
        return self.relu(out)


_DEPTHS: dict[int, tuple[type, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
_NUM_OUTPUTS = 4


class ResNet(Backbone):
    """ResNet-18/34/50/101/152 returning C2..C5.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_indices: which of C2, C3, C4, C5 (0..3) to return.
        frozen_stages: freeze the stem (0) and ``layer1..layer{frozen_stages}``;
            -1 freezes nothing.
        norm_eval: keep every BatchNorm in eval mode during training.
        norm: ``'BN'`` (``nn.BatchNorm2d``) or ``'FrozenBN'``
            (``torchvision.ops.FrozenBatchNorm2d``: fixed statistics and affine).
        dilate_c5: DC5: C5 at stride 16 with dilation 2 (depth >= 50).
        norm_eps: the norm layers' ``eps`` (None: the layer's default, 1e-5);
            torchvision's COCO RetinaNet v1 weights expect FrozenBN with 0.0.
        frozen_stages_eval: put the frozen stages in eval mode (their
            BatchNorms keep their statistics); False only stops their
            gradients and leaves their BatchNorms in the model's mode, as
            torchvision's ``trainable_backbone_layers`` does with ``'BN'``.
    """

    def __init__(self, depth: int = 50, out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1, norm_eval: bool = False, norm: str = "BN",
                 dilate_c5: bool = False, norm_eps: float | None = None,
                 frozen_stages_eval: bool = True, init_cfg=None):
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet: depth must be one of {sorted(_DEPTHS)}, got {depth!r}")
        if norm not in _NORMS:
            raise ValueError(f"ResNet: norm must be one of {sorted(_NORMS)}, got {norm!r}")
        out_indices = check_out_indices(out_indices, _NUM_OUTPUTS, "ResNet")
        check_frozen_stages(frozen_stages, _NUM_OUTPUTS, "ResNet")
        block, num_blocks = _DEPTHS[depth]
        if dilate_c5 and block is BasicBlock:
            raise ValueError(f"ResNet: dilate_c5=True needs a bottleneck ResNet (depth 50, 101 "
                             f"or 152), got depth={depth}")
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        self.depth = depth
        self.norm = norm
        self.dilate_c5 = dilate_c5
        self.frozen_stages_eval = bool(frozen_stages_eval)
        self.out_indices = out_indices
        self.num_stages = max(out_indices) + 1  # stages after the last output are not built
        norm_layer = _NORMS[norm]
        if norm_eps is not None:
            if not isinstance(norm_eps, (int, float)) or norm_eps < 0:
                raise ValueError(f"ResNet: norm_eps must be a number >= 0 or None, "
                                 f"got {norm_eps!r}")
            norm_layer = partial(norm_layer, eps=float(norm_eps))

        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            bn=norm_layer(64),
            relu=nn.ReLU(inplace=True),
            pool=nn.MaxPool2d(3, stride=2, padding=1)))
        in_channels = 64
        strides, widths = [], []
        stride_so_far = 4
        for index in range(self.num_stages):
            planes = 64 * 2 ** index
            stride = 1 if index == 0 else 2
            dilation = 1
            if index == 3 and dilate_c5:
                stride, dilation = 1, 2
            layer = self._make_layer(block, in_channels, planes, num_blocks[index], stride,
                                     dilation, norm_layer)
            self.add_module(f"layer{index + 1}", layer)
            in_channels = planes * block.expansion
            stride_so_far *= stride
            strides.append(stride_so_far)
            widths.append(in_channels)

        self._declare_stage_chain([f"layer{i + 1}" for i in range(self.num_stages)], out_indices,
                                  widths, strides)
        init_like_torchvision(self)

    @staticmethod
    def _make_layer(block: type, in_channels: int, planes: int, num_blocks: int, stride: int,
                    dilation: int, norm: Callable[[int], nn.Module]) -> nn.Sequential:
        """One stage; with dilation its first block keeps dilation 1 (torchvision)."""
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                norm(out_channels))
        blocks = [block(in_channels, planes, stride, 1, norm, downsample)]
        blocks += [block(out_channels, planes, 1, dilation, norm, None)
                   for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and not self.frozen_stages_eval and not self.norm_eval:
            for stage in self.stages()[:self.frozen_stages + 1]:
                stage.train()
        return self

    # -- torchvision weights -------------------------------------------------
    def convert_reference_state_dict(self, state_dict: Mapping[str, torch.Tensor]
                                      ) -> "OrderedDict[str, torch.Tensor]":
        """Rename a torchvision ``resnet{depth}`` state dict.

        ``conv1`` / ``bn1`` go to ``stem.conv`` / ``stem.bn``, ``layerN.*``
        keeps its name, ``fc`` and the layers of stages that were not built
        are dropped; any other key is an error. ``FrozenBatchNorm2d`` itself
        ignores ``num_batches_tracked``.
        """
        module_map = {"conv1": "stem.conv", "bn1": "stem.bn", "fc": None}
        module_map.update({f"layer{i + 1}": None for i in range(_NUM_OUTPUTS)})  # not built
        module_map.update({name: name for name in self._stage_names})
        return self._rename_reference_keys(state_dict, module_map, "torchvision resnet")
