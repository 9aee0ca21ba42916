"""Backbone -> (neck) -> dense head: RetinaNet, FCOS, SSD-style detectors.

The detector wires its parts from configs by the contract of
:mod:`toolbox.models.builder`: the neck is built with ``input_shape`` = the
backbone's ``output_shape()``, the head with ``input_shape`` = the neck's (or
the backbone's when there is no neck), unless the config sets
``in_channels`` itself. The head predicts in the network input's
coordinates; ``predict`` maps its boxes back to the original image once.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from toolbox.models.detectors.base import BaseDetector
from toolbox.structures import DetDataSample

__all__ = ["SingleStageDetector"]


class SingleStageDetector(BaseDetector):
    """A one-stage detector: ``bbox_head(neck(backbone(images)))``.

    Args:
        backbone: a ``BACKBONES`` config (or module) declaring its
            ``output_shape()``.
        neck: an optional ``NECKS`` config, or a list of them applied in order
            (each one built with ``input_shape`` = the previous part's outputs).
        bbox_head: a ``HEADS`` config with ``loss(feats, data_samples)`` and
            ``predict(feats, data_samples)`` (boxes in ``img_shape`` coordinates).
        data_preprocessor: a ``DetDataPreprocessor`` config (moves the listed
            uint8 images to the device, normalises with its ``mean`` / ``std``
            and pads them to at least the detector's ``size_divisor``); the
            default one does not normalise (for pipelines that do).
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
        self.bbox_head = self._build_bbox_head(bbox_head, source, name)

    def _build_bbox_head(self, cfg, source, name: str):
        """The head, built with ``input_shape`` = ``source``'s outputs."""
        return self._build_head(cfg, "bbox_head", source, name)

    # ----------------------------------------------------------------- modes
    def loss(self, inputs, data_samples: Sequence[DetDataSample]) -> dict[str, Tensor]:
        if data_samples is None:
            raise ValueError("SingleStageDetector: mode='loss' needs data_samples with "
                             "gt_instances")
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        return self.bbox_head.loss(self.extract_feat(batch), data_samples)

    def predict(self, inputs, data_samples=None, rescale: bool = True) -> list[DetDataSample]:
        """The samples with ``pred_instances``: in original-image coordinates
        with ``rescale`` (the default), else in ``img_shape`` coordinates."""
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        results = self.bbox_head.predict(self.extract_feat(batch), data_samples)
        return self._attach_predictions(data_samples, results, rescale)

    def forward_tensor(self, inputs, data_samples=None):
        return self.bbox_head(self.extract_feat(self._batch_inputs(inputs)))
