"""Fold inference-mode normalisation into the preceding convolution.

``mmcv.cnn.fuse_conv_bn`` folds ``nn.BatchNorm*`` only; the reference
detectors' backbones use ``torchvision.ops.FrozenBatchNorm2d`` (fixed
statistics as buffers), which is folded here the same way: a norm that
directly follows a conv among a module's children (registration order, as
``conv1, bn1`` in ResNet blocks or ``Sequential(conv, bn)``) becomes part of
that conv and is replaced by ``nn.Identity``. For inference only (eval mode:
a ``BatchNorm`` in training mode would use batch statistics).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["fuse_conv_bn"]

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _scale_shift(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    eps = getattr(norm, "eps", 1e-5)
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    scale = weight * (norm.running_var + eps).rsqrt()
    return scale, bias - norm.running_mean * scale


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    scale, shift = _scale_shift(norm)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.bias = nn.Parameter(bias * scale + shift)


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """Fold every (conv, norm) pair of ``module`` in place; returns it."""
    last_conv, last_name = None, None
    for name, child in module.named_children():
        if isinstance(child, _NORMS) and last_conv is not None and \
                getattr(child, "running_var", None) is not None:
            _fold(last_conv, child)
            setattr(module, name, nn.Identity())
            last_conv = None
        elif isinstance(child, nn.Conv2d):
            last_conv, last_name = child, name
        else:
            fuse_conv_bn(child)
            last_conv = None
    return module
