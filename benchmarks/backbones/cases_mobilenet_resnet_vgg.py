"""Benchmark cases: toolbox MobileNetV3 / ResNet / VGG vs torchvision.

In each case both modules hold the same weights (torchvision's random
initialisation, loaded through ``load_reference``), run in eval mode and
return the same tuple of NCHW maps, so the timing driver can also check that
their outputs agree. The reference is torchvision's model cut by
``create_feature_extractor`` at the layers the toolbox module returns.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small, resnet50, vgg16
from torchvision.models.feature_extraction import create_feature_extractor

from toolbox.models.backbones.mobilenet_v3 import MobileNetV3
from toolbox.models.backbones.resnet import ResNet
from toolbox.models.backbones.vgg import VGG


class FeatureTuple(nn.Module):
    """A torchvision model cut at ``nodes``, returning their outputs as a tuple."""

    def __init__(self, model: nn.Module, nodes: list[str]):
        super().__init__()
        self.nodes = [str(i) for i in range(len(nodes))]
        self.body = create_feature_extractor(model, return_nodes=dict(zip(nodes, self.nodes)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.body(images)
        return tuple(feats[name] for name in self.nodes)


def _pair(ours: nn.Module, reference: nn.Module, nodes: list[str]) -> tuple[nn.Module, nn.Module]:
    ours.load_reference(reference.state_dict())
    return ours.eval(), FeatureTuple(reference.eval(), nodes).eval()


def cases():
    """``[(label, toolbox_module, reference_module, (H, W)), ...]``."""
    torch.manual_seed(0)
    # MobileNetV3: the last layer at strides 4, 8, 16 and the final 1x1 conv.
    large = _pair(MobileNetV3(arch="large"), mobilenet_v3_large(weights=None),
                  ["features.3", "features.6", "features.12", "features.16"])
    small = _pair(MobileNetV3(arch="small"), mobilenet_v3_small(weights=None),
                  ["features.1", "features.3", "features.8", "features.12"])
    # ResNet-50: C2..C5.
    r50 = _pair(ResNet(depth=50), resnet50(weights=None),
                ["layer1", "layer2", "layer3", "layer4"])
    # VGG-16: relu4_3 and relu5_3 (torchvision has no fc6/fc7 convs or
    # conv6_x), without the L2Norm so both return the same maps.
    vgg = _pair(VGG(depth=16, out_indices=(0, 1), l2_norm_scales=None), vgg16(weights=None),
                ["features.22", "features.29"])
    return [
        ("mobilenet_v3_large 224x224", *large, (224, 224)),
        ("mobilenet_v3_small 224x224", *small, (224, 224)),
        ("resnet50 224x224", *r50, (224, 224)),
        ("vgg16 conv4_3+conv5_3 224x224", *vgg, (224, 224)),
    ]
