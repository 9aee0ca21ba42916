"""RefineDet's transfer connection block (TCB; Zhang et al., CVPR 2018, Fig. 2).

A TCB turns one ARM feature map into an ODM feature map of a common width,
adding the (2x deconvolved) TCB output of the next coarser level::

    x ──conv3x3─ReLU─conv3x3──(+)──ReLU─conv3x3─ReLU──> out
                               │
    coarser TCB out ──deconv 2x2, stride 2 (absent on the coarsest level)

The deconvolution is 2x2 with stride 2 (it exactly doubles the map; the
widely used PyTorch port of RefineDet builds it the same way). When the finer map's side is odd (the coarser one was rounded up), the
upsampled map is cropped to it.
"""
from __future__ import annotations

import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor, nn

__all__ = ["TransferConnectionBlock"]


class TransferConnectionBlock(nn.Module):
    """One level's TCB.

    Args:
        in_channels: channels of the ARM feature map of this level.
        out_channels: width of the ODM features (256 in the paper).
        has_upper: whether a coarser level feeds this one (False on the
            coarsest level: no deconvolution, no sum).
        norm_cfg: optional norm after every conv (None in the paper).
    """

    def __init__(self, in_channels: int, out_channels: int = 256, has_upper: bool = True,
                 norm_cfg: dict | None = None):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TransferConnectionBlock: '{name}' must be a positive int, "
                                 f"got {value!r}")
        self.in_channels, self.out_channels, self.has_upper = in_channels, out_channels, has_upper
        self.lateral = nn.Sequential(
            ConvModule(in_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg),
            ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg, act_cfg=None))
        self.upsample = (nn.ConvTranspose2d(out_channels, out_channels, 2, stride=2)
                         if has_upper else None)
        self.relu = nn.ReLU(inplace=True)
        self.fuse = ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg)

    def forward(self, x: Tensor, upper: Tensor | None = None) -> Tensor:
        """``x`` [B, in_channels, H, W]; ``upper`` [B, out_channels, ~H/2, ~W/2]
        (the coarser TCB output) exactly when ``has_upper``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"TransferConnectionBlock: expected a [B, {self.in_channels}, H, W] "
                             f"input, got {tuple(x.shape)}")
        if (upper is not None) != self.has_upper:
            raise ValueError("TransferConnectionBlock: 'upper' must be given exactly when "
                             f"has_upper=True (has_upper={self.has_upper})")
        out = self.lateral(x)
        if upper is not None:
            up = self.upsample(upper)
            dh, dw = out.shape[-2] - up.shape[-2], out.shape[-1] - up.shape[-1]
            if dh or dw:  # crop (negative padding) or pad to the finer map
                up = F.pad(up, (0, dw, 0, dh))
            out = out + up
        return self.fuse(self.relu(out))
