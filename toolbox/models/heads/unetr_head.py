"""UNETR's decoder (Hatamizadeh et al., WACV 2022, https://arxiv.org/abs/2103.10504).

Input: the five levels a :class:`~toolbox.models.backbones.vit.ViT` with
``with_input=True`` returns: the image ``x`` (stride 1) and four transformer
maps ``z_a, z_b, z_c, z_d`` (stride 16, ``hidden`` channels). With ``f =
feature_size``:

* ``input_block``: conv block on ``x`` -> f channels, stride 1;
* ``skip1/2/3``: ``z_a`` up 8x to 2f, ``z_b`` up 4x to 4f, ``z_c`` up 2x to
  8f (deconvs and conv blocks, :class:`ProjectionUpBlock`);
* ``up3/2/1/0``: from ``z_d``, four times (2x deconv, concatenate the skip of
  that resolution, conv block): 8f at stride 8, 4f at 4, 2f at 2, f at 1;
* ``conv_seg``: 1x1 conv to ``num_classes`` logits.

Conv blocks are residual with instance norm and LeakyReLU (MONAI's
``UnetResBlock``). :meth:`UNETRHead.convert_reference_state_dict` maps
MONAI's ``UNETR`` decoder keys (``encoder1..4``, ``decoder2..5``, ``out``).

Segmentation head contract: ``forward(feats) -> logits [B, K, *S]``,
``loss(feats, data_samples) -> {'loss_seg': ...}`` (``loss_decode(logits,
labels)`` against the stacked ``gt_sem_seg``, padded with ``ignore_index``
to the logits' size), ``predict(feats, data_samples) -> logits``.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.model import BaseModule
from torch import Tensor

from toolbox.models.heads.parts import loss_with_defaults, resolve_input_shape
from toolbox.models.layers.unetr_blocks import (ConvBlock, ProjectionUpBlock, UpBlock,
                                                conv_cfg_for)
from toolbox.structures.feature_spec import FeatureSpec
from toolbox.structures.seg_data_sample import IGNORE_INDEX

__all__ = ["UNETRHead"]

# MONAI UNETR module -> ours (the decoder part).
_MONAI_MODULES = {
    "encoder1.layer": "input_block",
    "encoder2": "skip1", "encoder3": "skip2", "encoder4": "skip3",
    "decoder5": "up3", "decoder4": "up2", "decoder3": "up1", "decoder2": "up0",
    "out.conv.conv": "conv_seg",
}
# Renamings inside those modules, applied in order (MONAI wraps each conv in
# a ``Convolution`` holding it as ``.conv``).
_MONAI_PARTS = (
    (r"^transp_conv_init\.conv\.", "deconv_init."),
    (r"^transp_conv\.conv\.", "deconv."),
    (r"^blocks\.(\d+)\.0\.conv\.", r"steps.\1.0."),
    (r"^blocks\.(\d+)\.1\.", r"steps.\1.1."),
    (r"^blocks\.(\d+)\.conv\.", r"steps.\1."),
    (r"(^|\.)conv3\.conv\.", r"\1shortcut.conv."),
)


class UNETRHead(BaseModule):
    """UNETR decoder: image + four transformer maps -> class logits.

    Args:
        num_classes: output classes (background included).
        in_channels: widths of the five inputs ``(image, hidden x 4)``,
            filled from the backbone's ``out_channels`` by the segmentor.
        spatial_dims: 2 or 3.
        feature_size: ``f`` above (16 in the paper).
        norm_cfg: normalisation of the conv blocks, without its dimension.
        res_block: residual conv blocks (True in the paper).
        conv_block: conv blocks in the projection up-samplings.
        strides: the inputs' strides (checked to be ``(1, 16, 16, 16, 16)``
            when given: the decoder up-samples by 2 four times).
        loss_decode: a ``LOSSES`` config called ``loss(logits, labels)``
            (default ``DiceCELoss``; same type merges, another replaces).
        ignore_index: label of pixels that do not count (padding).
        input_shape: the five inputs' :class:`FeatureSpec` (fills
            ``in_channels`` / ``strides``).
    """

    def __init__(self, num_classes: int, in_channels: Sequence[int] | None = None,
                 spatial_dims: int = 3,
                 feature_size: int = 16, norm_cfg: dict | None = None, res_block: bool = True,
                 conv_block: bool = True, strides: Sequence[int] | None = None,
                 loss_decode: dict | None = None, ignore_index: int = IGNORE_INDEX,
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        in_channels, strides = resolve_input_shape("UNETRHead", input_shape, in_channels,
                                                   strides)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"UNETRHead: num_classes must be a positive int, got {num_classes!r}")
        if isinstance(in_channels, int) or len(tuple(in_channels)) != 5:
            raise ValueError(f"UNETRHead: in_channels must be 5 widths (image, then 4 "
                             f"transformer maps; a ViT backbone with with_input=True), got "
                             f"{in_channels!r}")
        if strides is not None and tuple(strides) != (1, 16, 16, 16, 16):
            raise ValueError(f"UNETRHead: strides must be (1, 16, 16, 16, 16) (image and "
                             f"16-voxel patches), got {tuple(strides)!r}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"UNETRHead: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        image_ch, *hidden = (int(c) for c in in_channels)
        f = feature_size
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims
        self.ignore_index = ignore_index
        block = dict(spatial_dims=spatial_dims, norm_cfg=norm_cfg, residual=res_block)
        self.input_block = ConvBlock(image_ch, f, **block)
        self.skip1 = ProjectionUpBlock(hidden[0], 2 * f, 2, conv_block=conv_block, **block)
        self.skip2 = ProjectionUpBlock(hidden[1], 4 * f, 1, conv_block=conv_block, **block)
        self.skip3 = ProjectionUpBlock(hidden[2], 8 * f, 0, conv_block=conv_block, **block)
        self.up3 = UpBlock(hidden[3], 8 * f, **block)
        self.up2 = UpBlock(8 * f, 4 * f, **block)
        self.up1 = UpBlock(4 * f, 2 * f, **block)
        self.up0 = UpBlock(2 * f, f, **block)
        self.conv_seg = build_conv_layer(conv_cfg_for(spatial_dims), f, num_classes, 1)
        self.loss_decode = loss_with_defaults(loss_decode, dict(type="DiceCELoss"))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        if len(feats) != 5:
            raise ValueError(f"UNETRHead: expected 5 inputs (image and 4 transformer maps), got "
                             f"{len(feats)}")
        image, z_a, z_b, z_c, z_d = feats
        x = self.up3(z_d, self.skip3(z_c))
        x = self.up2(x, self.skip2(z_b))
        x = self.up1(x, self.skip1(z_a))
        x = self.up0(x, self.input_block(image))
        return self.conv_seg(x)

    # ------------------------------------------------------------ contract
    def _stacked_labels(self, data_samples, shape: Sequence[int], device) -> Tensor:
        labels = []
        for index, sample in enumerate(data_samples):
            if "gt_sem_seg" not in sample:
                raise ValueError(f"UNETRHead: data sample {index} has no gt_sem_seg")
            gt = sample.gt_sem_seg.to(device=device, dtype=torch.long)
            gt = gt.squeeze(0) if gt.dim() == self.spatial_dims + 1 and gt.shape[0] == 1 else gt
            if gt.dim() != self.spatial_dims or any(g > s for g, s in zip(gt.shape, shape)):
                raise ValueError(f"UNETRHead: gt_sem_seg of sample {index} has shape "
                                 f"{tuple(gt.shape)}; expected at most {tuple(shape)} (the "
                                 f"logits' spatial size)")
            pad = []
            for g, s in zip(reversed(gt.shape), reversed(shape)):
                pad += [0, s - g]
            labels.append(F.pad(gt, pad, value=self.ignore_index) if any(pad) else gt)
        return torch.stack(labels)

    def loss(self, feats: Sequence[Tensor], data_samples) -> dict[str, Tensor]:
        logits = self(feats)
        labels = self._stacked_labels(data_samples, logits.shape[2:], logits.device)
        return {"loss_seg": self.loss_decode(logits, labels)}

    def predict(self, feats: Sequence[Tensor], data_samples=None) -> Tensor:
        """Logits ``[B, K, *S]`` at the input's (padded) size; the segmentor
        maps them back to each image's original frame."""
        return self(feats)

    # ------------------------------------------------------ reference weights
    def convert_reference_state_dict(self, state_dict: Mapping[str, Tensor]
                                     ) -> "OrderedDict[str, Tensor]":
        """Map the decoder keys of MONAI's ``UNETR`` state dict to this head's
        (``vit.*`` keys belong to the backbone and are left out)."""
        renamed: OrderedDict[str, Tensor] = OrderedDict()
        unknown = []
        for key, value in state_dict.items():
            if key.startswith("vit."):
                continue
            for theirs, ours in _MONAI_MODULES.items():
                if key.startswith(theirs + "."):
                    rest = key[len(theirs) + 1:]
                    for pattern, repl in _MONAI_PARTS:
                        rest = re.sub(pattern, repl, rest)
                    renamed[f"{ours}.{rest}"] = value
                    break
            else:
                unknown.append(key)
        if unknown:
            raise KeyError(f"UNETRHead.convert_reference_state_dict: {len(unknown)} key(s) are "
                           f"not part of a MONAI UNETR state dict, e.g. {unknown[:5]}")
        return renamed
