"""TemplateNet: a small plain conv backbone showing the backbone contract."""
from torch import nn

from toolbox.models.backbones.base import Backbone


def _conv_bn_relu(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TemplateNet(Backbone):
    """Stem (stride 2) then ``len(widths)`` stride-2 stages.

    Declares its outputs (``declare_outputs``, read back as ``output_shape()``)
    for the selected ``out_indices`` so necks and heads get their ``input_shape``.
    """

    def __init__(self, widths=(16, 32, 64), out_indices=(0, 1, 2), frozen_stages=-1,
                 norm_eval=False, init_cfg=None):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval, init_cfg=init_cfg)
        if not out_indices or max(out_indices) >= len(widths):
            raise ValueError(f"out_indices {out_indices} must index widths {widths}")
        self.stem = _conv_bn_relu(3, widths[0], 2)
        chans = (widths[0],) + tuple(widths)
        self.layers = nn.ModuleList(_conv_bn_relu(chans[i], chans[i + 1], 2)
                                    for i in range(len(widths)))
        self.out_indices = tuple(out_indices)
        self.declare_outputs(channels=[widths[i] for i in self.out_indices],
                             strides=[2 ** (i + 2) for i in self.out_indices],
                             size_divisor=2 ** (len(widths) + 1))

    def stages(self):
        return [self.stem, *self.layers]

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
