"""DETR (Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020).

``backbone -> (neck) -> DETRHead``: the head reads the last feature map
(C5 of a ResNet, or the last output of a neck) and owns the transformer,
the set prediction and the Hungarian loss. Images are padded at the
bottom/right to the backbone's ``size_divisor``; the head turns each
image's ``img_shape`` against the padded batch into the attention's key
padding mask. Everything (backbone, neck, transformer, losses) is chosen by
config; see ``configs/detr/``.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from toolbox.models.detectors.base import declared
from toolbox.models.detectors.single_stage import SingleStageDetector
from toolbox.registry import HEADS
from toolbox.structures import DetDataSample

__all__ = ["DETR"]


class DETR(SingleStageDetector):
    """A set-prediction detector: ``bbox_head(neck(backbone(images)))``.

    Args:
        backbone: a ``BACKBONES`` config (or module); only its last output
            is used, so ``out_indices=(3,)`` for a ResNet avoids extra work.
        neck: optional ``NECKS`` config (or list of them, applied in order).
        bbox_head: a ``HEADS`` config, normally ``DETRHead``; its
            ``in_channels`` is filled from the last map's width.
        pad_size_divisor: the multiple the batch is padded to (bottom/right);
            None (default) uses the backbone's / neck's ``size_divisor``; 1
            pads only to the largest image of the batch, as the official DETR
            (set the data pipeline's ``Pad`` and the collate ``size_divisor``
            to match).
        data_preprocessor, init_cfg: as :class:`SingleStageDetector`.

    ``forward(inputs, data_samples=None, mode='tensor')``: ``'loss'`` the
    head's loss dict (``loss_cls``, ``loss_bbox``, ``loss_iou`` and the
    ``d{i}.`` auxiliary losses of the earlier decoder layers), ``'predict'``
    the samples with ``pred_instances`` in original-image coordinates,
    ``'tensor'`` the class logits [L, B, Q, C + 1] and boxes [L, B, Q, 4].
    """

    def __init__(self, backbone, neck=None, bbox_head=None, pad_size_divisor: int | None = None,
                 data_preprocessor=None, init_cfg=None):
        if pad_size_divisor is not None and (not isinstance(pad_size_divisor, int)
                                             or isinstance(pad_size_divisor, bool)
                                             or pad_size_divisor < 1):
            raise ValueError(f"DETR: 'pad_size_divisor' must be None or a positive int, got "
                             f"{pad_size_divisor!r}")
        if bbox_head is None:
            raise ValueError("DETR: 'bbox_head' is required (a HEADS config such as "
                             "dict(type='DETRHead', num_classes=...))")
        # backbone and neck as SingleStageDetector builds them; the head is
        # built here with in_channels = the width of the last map only
        super().__init__(backbone, neck=neck, bbox_head=nn.Identity(),
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.pad_size_divisor = pad_size_divisor
        source, name = (self.neck, "neck") if self.neck is not None else (self.backbone, "backbone")
        channels = declared(source, "out_channels")
        self.bbox_head = self._build_part(bbox_head, HEADS, "bbox_head", {
            "in_channels": (channels[-1] if channels else None, name)})

    @property
    def size_divisor(self) -> int:
        divisor = getattr(self, "pad_size_divisor", None)
        return super().size_divisor if divisor is None else divisor

    def forward_tensor(self, inputs, data_samples: Sequence[DetDataSample] | None = None):
        batch = self._batch_inputs(inputs)
        metas = None
        if data_samples is not None:
            metas = [s.metainfo for s in self._complete_metainfo(batch, data_samples, inputs)]
        return self.bbox_head(self.extract_feat(batch), metas)
