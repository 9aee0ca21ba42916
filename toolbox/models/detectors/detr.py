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

from toolbox.models.builder import output_shape_of
from toolbox.models.detectors.single_stage import SingleStageDetector
from toolbox.structures import DetDataSample

__all__ = ["DETR"]


class DETR(SingleStageDetector):
    """A set-prediction detector: ``bbox_head(neck(backbone(images)))``.

    Args:
        backbone: a ``BACKBONES`` config (or module); only its last output
            is used, so ``out_indices=(3,)`` for a ResNet avoids extra work.
        neck: optional ``NECKS`` config (or list of them, applied in order).
        bbox_head: a ``HEADS`` config, normally ``DETRHead``; it is built
            with ``input_shape`` = the last map's ``FeatureSpec`` (the one
            DETR reads; the head projects it to its ``embed_dims``).
        pad_size_divisor: the multiple the batch is padded to (bottom/right);
            None (default) uses the backbone's / neck's ``size_divisor``; 1
            pads only to the largest image of the batch, as the official DETR
            (the data preprocessor pads to the larger of this and its own
            ``pad_size_divisor``: set that to 1 too).
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
        super().__init__(backbone, neck=neck, bbox_head=bbox_head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.pad_size_divisor = pad_size_divisor

    def _build_bbox_head(self, cfg, source, name: str):
        """The head, built with ``input_shape`` = the last map only."""
        specs = None if isinstance(cfg, nn.Module) else output_shape_of(source)
        return self._build_head(cfg, "bbox_head", source, name,
                                input_shape=specs[-1:] if specs else None)

    def _clips_to_original(self) -> bool:
        """As the head's ``test_cfg['clip_boxes']`` (True when it has none)."""
        return bool((getattr(self.bbox_head, "test_cfg", None) or {}).get("clip_boxes", True))

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
