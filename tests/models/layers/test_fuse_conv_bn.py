"""fuse_conv_bn folds BatchNorm2d and torchvision's FrozenBatchNorm2d into
the preceding conv without changing the output (checked against the unfused
model) and leaves other modules alone."""
import copy

import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from toolbox.models.layers.fuse_conv_bn import fuse_conv_bn
from toolbox.registry import BACKBONES


def _randomise(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.running_var.numel()
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def test_frozen_bn_resnet_folds_exactly_enough():
    model = _randomise(BACKBONES.build(dict(type="ResNet", depth=18, norm="FrozenBN",
                                            norm_eps=0.0))).eval()
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, 64, 96)
    for a, b in zip(model(x), fused(x)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_batchnorm_with_conv_bias_and_unpaired_norms():
    block = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.BatchNorm2d(4))  # the second norm follows no conv: kept
    _randomise(block).eval()
    fused = fuse_conv_bn(copy.deepcopy(block))
    assert isinstance(fused[1], nn.Identity) and isinstance(fused[3], nn.BatchNorm2d)
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(fused(x), block(x), rtol=1e-5, atol=1e-5)


def test_torchvision_mobilenet_v3_still_matches():
    model = _randomise(torchvision.models.mobilenet_v3_small()).eval()
    fused = fuse_conv_bn(copy.deepcopy(model))
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-4)
