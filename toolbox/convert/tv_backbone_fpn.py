"""Key rules shared by torchvision's detection layouts: the ResNet body of
``resnet_fpn_backbone`` (``backbone.body.*``) and the FPN's lateral and
output convs (``backbone.fpn.{inner,layer}_blocks.N``, with or without the
``.0`` that ``Conv2dNormActivation`` added in torchvision 0.13)."""
from __future__ import annotations

__all__ = ["FPN_BLOCKS", "RESNET_BODY"]

RESNET_BODY = [
    (r"backbone\.body\.conv1\.(.+)", r"backbone.stem.conv.\1"),
    (r"backbone\.body\.bn1\.(.+)", r"backbone.stem.bn.\1"),
    (r"backbone\.body\.(layer[1-4]\..+)", r"backbone.\1"),
]
FPN_BLOCKS = [
    (r"backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?(weight|bias)", r"neck.lateral_convs.\1.conv.\2"),
    (r"backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?(weight|bias)", r"neck.fpn_convs.\1.conv.\2"),
]
