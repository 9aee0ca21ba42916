"""TemplateNeck: projects every input level to one width (a 1x1 conv each)."""
from torch import nn

from toolbox.models.necks.base import Neck


class TemplateNeck(Neck):
    def __init__(self, in_channels, out_channels=32, in_strides=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.proj = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.out_channels = (out_channels,) * len(in_channels)
        self.out_strides = tuple(in_strides) if in_strides else ()

    def forward(self, feats):
        if len(feats) != len(self.proj):
            raise ValueError(f"TemplateNeck expects {len(self.proj)} maps, got {len(feats)}")
        return tuple(p(f) for p, f in zip(self.proj, feats))
