"""UNETR's decoder blocks (Hatamizadeh et al., WACV 2022), for 2D and 3D maps.

* :class:`ConvBlock`: two k x k (x k) conv-norm layers with LeakyReLU(0.01)
  after each; ``residual=True`` adds the input before the last activation,
  through a 1 x 1 conv-norm shortcut when the width changes (MONAI's
  ``UnetResBlock``; ``residual=False`` is its ``UnetBasicBlock``).
* :class:`ProjectionUpBlock`: brings a transformer map up by ``2 ** (1 +
  num_layers)``: a 2x transposed conv, then ``num_layers`` times a 2x
  transposed conv followed by a :class:`ConvBlock` (MONAI's ``UnetrPrUpBlock``).
* :class:`UpBlock`: a 2x transposed conv, concatenation with a skip of the
  same width, a :class:`ConvBlock` (MONAI's ``UnetrUpBlock``).

Transposed convs have no bias (the norm that follows would cancel it);
normalisation is ``norm_cfg`` (instance norm without affine parameters by
default, as in the paper), given without its dimension: ``dict(type='IN')``
becomes ``IN3d`` for volumes. Convs are mmcv ``ConvModule`` bricks.
"""
from __future__ import annotations

import torch
from mmcv.cnn import ConvModule, build_conv_layer
from torch import Tensor, nn

__all__ = ["ConvBlock", "ProjectionUpBlock", "UpBlock", "conv_cfg_for", "norm_cfg_for"]

_DIM_SUFFIXED_NORMS = ("IN", "BN")


def _check_spatial_dims(spatial_dims) -> int:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims!r}")
    return spatial_dims


def conv_cfg_for(spatial_dims: int, transposed: bool = False) -> dict:
    """mmcv conv config for ``spatial_dims`` 2 or 3 (transposed: a deconv)."""
    _check_spatial_dims(spatial_dims)
    if transposed:
        return dict(type="deconv" if spatial_dims == 2 else "deconv3d")
    return dict(type=f"Conv{spatial_dims}d")


def norm_cfg_for(norm_cfg: dict, spatial_dims: int) -> dict:
    """``norm_cfg`` with IN/BN made 2D or 3D (``dict(type='IN')`` -> ``IN3d``)."""
    _check_spatial_dims(spatial_dims)
    if not isinstance(norm_cfg, dict) or "type" not in norm_cfg:
        raise TypeError(f"norm_cfg must be a dict with a 'type' key, got {norm_cfg!r}")
    cfg = dict(norm_cfg)
    if cfg["type"] in _DIM_SUFFIXED_NORMS:
        cfg["type"] = f"{cfg['type']}{spatial_dims}d"
    return cfg


def _deconv2x(in_channels: int, out_channels: int, spatial_dims: int) -> nn.Module:
    return build_conv_layer(conv_cfg_for(spatial_dims, transposed=True), in_channels,
                            out_channels, kernel_size=2, stride=2, bias=False)


class ConvBlock(nn.Module):
    """conv-norm-LeakyReLU, conv-norm, (+ shortcut), LeakyReLU.

    Args:
        in_channels, out_channels: widths.
        spatial_dims: 2 or 3.
        kernel_size: of both convs (padding keeps the size).
        norm_cfg: normalisation without its dimension (``dict(type='IN')``).
        residual: add the (projected) input before the last activation.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 3,
                 kernel_size: int = 3, norm_cfg: dict | None = None, residual: bool = True):
        super().__init__()
        norm = norm_cfg_for(norm_cfg or dict(type="IN"), spatial_dims)
        conv = conv_cfg_for(spatial_dims)
        act = dict(type="LeakyReLU", negative_slope=0.01)
        padding = kernel_size // 2
        self.residual = residual
        self.conv1 = ConvModule(in_channels, out_channels, kernel_size, padding=padding,
                                conv_cfg=conv, norm_cfg=norm, act_cfg=act)
        # The second activation comes after the residual sum (when there is one).
        self.conv2 = ConvModule(out_channels, out_channels, kernel_size, padding=padding,
                                conv_cfg=conv, norm_cfg=norm, act_cfg=None)
        self.shortcut = None
        if residual and in_channels != out_channels:
            self.shortcut = ConvModule(in_channels, out_channels, 1, conv_cfg=conv,
                                       norm_cfg=norm, act_cfg=None)
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        if self.residual:
            out = out + (x if self.shortcut is None else self.shortcut(x))
        return self.act(out)


class ProjectionUpBlock(nn.Module):
    """A transformer map up-sampled ``2 ** (1 + num_layers)`` times.

    Args:
        in_channels: transformer width.
        out_channels: width of every layer of the block.
        num_layers: deconv + :class:`ConvBlock` steps after the first deconv.
        spatial_dims, kernel_size, norm_cfg, residual: of the conv blocks.
        conv_block: ``False`` leaves only the transposed convs (MONAI's
            ``conv_block=False``).
    """

    def __init__(self, in_channels: int, out_channels: int, num_layers: int,
                 spatial_dims: int = 3, kernel_size: int = 3, norm_cfg: dict | None = None,
                 residual: bool = True, conv_block: bool = True):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"ProjectionUpBlock: num_layers must be an int >= 0, "
                             f"got {num_layers!r}")
        self.deconv_init = _deconv2x(in_channels, out_channels, spatial_dims)
        steps = []
        for _ in range(num_layers):
            deconv = _deconv2x(out_channels, out_channels, spatial_dims)
            if conv_block:
                steps.append(nn.Sequential(deconv, ConvBlock(
                    out_channels, out_channels, spatial_dims, kernel_size, norm_cfg, residual)))
            else:
                steps.append(deconv)
        self.steps = nn.ModuleList(steps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.deconv_init(x)
        for step in self.steps:
            x = step(x)
        return x


class UpBlock(nn.Module):
    """2x transposed conv, concatenation with ``skip``, :class:`ConvBlock`.

    ``skip`` must have ``out_channels`` channels and twice the input's size.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int = 3,
                 kernel_size: int = 3, norm_cfg: dict | None = None, residual: bool = True):
        super().__init__()
        self.deconv = _deconv2x(in_channels, out_channels, spatial_dims)
        self.conv_block = ConvBlock(2 * out_channels, out_channels, spatial_dims, kernel_size,
                                    norm_cfg, residual)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.deconv(x)
        if up.shape[1:] != skip.shape[1:]:
            raise ValueError(f"UpBlock: the skip has shape {tuple(skip.shape[1:])}, expected "
                             f"{tuple(up.shape[1:])} (channels, *size) to match the up-sampled map")
        return self.conv_block(torch.cat((up, skip), dim=1))
