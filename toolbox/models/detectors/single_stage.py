"""Backbone -> (neck) -> dense head: RetinaNet, FCOS, SSD-style detectors.

The detector wires its parts from configs and fills in what the previous
part declares: a neck's ``in_channels`` / ``in_strides`` come from the
backbone's ``out_channels`` / ``out_strides``, and the head's
``in_channels`` / ``strides`` from the neck (or the backbone when there is
no neck), unless the config sets them. A head's ``in_channels`` is one int
when every level has the same width, else the tuple of widths.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from toolbox.models.detectors.base import BaseDetector
from toolbox.registry import HEADS
from toolbox.structures import DetDataSample

__all__ = ["SingleStageDetector"]


class SingleStageDetector(BaseDetector):
    """A one-stage detector: ``bbox_head(neck(backbone(images)))``.

    Args:
        backbone: a ``BACKBONES`` config (or module) declaring
            ``out_channels`` / ``out_strides``.
        neck: an optional ``NECKS`` config, or a list of them applied in order
            (each one's ``in_channels`` / ``in_strides`` filled from the previous).
        bbox_head: a ``HEADS`` config with ``loss`` and ``predict``.
        data_preprocessor: defaults to mmengine's ``BaseDataPreprocessor``
            (moves data to the device; images arrive normalised and padded).
        init_cfg: mmengine initialisation config.

    ``forward(inputs, data_samples=None, mode='tensor')``: ``'loss'`` returns
    the head's loss dict, ``'predict'`` the input ``DetDataSample`` objects
    with ``pred_instances`` (original-image coordinates) added, ``'tensor'``
    the head's raw outputs.
    """

    def __init__(self, backbone, neck=None, bbox_head=None, data_preprocessor=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if bbox_head is None:
            raise ValueError("SingleStageDetector: 'bbox_head' is required (a HEADS config)")
        source, name = self._build_trunk(backbone, neck)
        self.bbox_head = self._build_part(bbox_head, HEADS, "bbox_head",
                                          self._head_inputs(source, name))

    # ----------------------------------------------------------------- modes
    def loss(self, inputs, data_samples: Sequence[DetDataSample]) -> dict[str, Tensor]:
        if data_samples is None:
            raise ValueError("SingleStageDetector: mode='loss' needs data_samples with "
                             "gt_instances")
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        return self.bbox_head.loss(self.extract_feat(batch), data_samples)

    def predict(self, inputs, data_samples=None, rescale: bool = True) -> list[DetDataSample]:
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        results = self.bbox_head.predict(self.extract_feat(batch), data_samples, rescale=rescale)
        for sample, instances in zip(data_samples, results):
            sample.pred_instances = instances
        return list(data_samples)

    def forward_tensor(self, inputs, data_samples=None):
        return self.bbox_head(self.extract_feat(self._batch_inputs(inputs)))
