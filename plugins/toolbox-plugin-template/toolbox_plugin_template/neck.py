"""TemplateNeck: projects every input level to one width (a 1x1 conv each)."""
from torch import nn

from toolbox.models.necks.base import Neck


class TemplateNeck(Neck):
    def __init__(self, input_shape=None, in_channels=None, out_channels=32, in_strides=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        in_channels, in_strides = self.resolve_inputs(input_shape, in_channels, in_strides)
        self.proj = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.declare_outputs(channels=[out_channels] * len(in_channels), strides=in_strides)

    def forward(self, feats):
        if len(feats) != len(self.proj):
            raise ValueError(f"TemplateNeck expects {len(self.proj)} maps, got {len(feats)}")
        return tuple(p(f) for p, f in zip(self.proj, feats))
