"""Backbone -> (neck) -> RPN head -> RoI head: Faster R-CNN-style detectors.

The RPN head (``RPNHead``, ``GARPNHead``: any head with the RPN interface
described in ``toolbox/models/heads/rpn_head.py``) turns the feature maps
into class-agnostic proposals; the RoI head (``RoIBoxHead``) pools each
proposal's features, classifies it and refines its box.

Like :class:`SingleStageDetector`, the detector builds both heads with
``input_shape`` = the neck's (or the backbone's) ``output_shape()``, and
refuses a head configured with strides that disagree with the features it
gets. The RPN's proposals and the RoI head's detections are in ``img_shape``
coordinates; ``predict`` maps the detections back to the original image once.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from toolbox.models.builder import output_shape_of
from toolbox.models.detectors.base import BaseDetector
from toolbox.structures import DetDataSample
from toolbox.structures.feature_spec import strides_of

__all__ = ["TwoStageDetector"]

DEFAULT_TRAIN_CFG = dict(rpn_proposal=dict(nms_pre=2000, max_per_img=1000))


class TwoStageDetector(BaseDetector):
    """A two-stage detector: ``roi_head(feats, rpn_head(feats))``.

    Args:
        backbone: a ``BACKBONES`` config (or module).
        neck: an optional ``NECKS`` config, or a list applied in order.
        rpn_head: a ``HEADS`` config with the RPN interface (``loss``,
            ``predict``, ``loss_and_predict``).
        roi_head: a ``HEADS`` config with ``loss(feats, proposals,
            data_samples)`` and ``predict(feats, proposals, data_samples)``
            (e.g. ``RoIBoxHead``).
        train_cfg: ``rpn_proposal``: the RPN's ``test_cfg`` overrides used
            to make the training proposals (default ``nms_pre=2000,
            max_per_img=1000``).
        data_preprocessor: as :class:`SingleStageDetector` (a
            ``DetDataPreprocessor`` config; the default does not normalise).
        init_cfg: mmengine initialisation config.

    ``forward(inputs, data_samples=None, mode='tensor')``: ``'loss'`` returns
    the RPN losses (``loss_rpn_cls``, ``loss_rpn_bbox``) and the RoI head's
    (``loss_cls``, ``loss_bbox``); ``'predict'`` the samples with
    ``pred_instances`` in original-image coordinates; ``'tensor'`` the RPN
    outputs and the RoI head's class logits and deltas for the proposals.
    """

    def __init__(self, backbone, neck=None, rpn_head=None, roi_head=None,
                 train_cfg: dict | None = None, data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        for name, cfg in (("rpn_head", rpn_head), ("roi_head", roi_head)):
            if cfg is None:
                raise ValueError(f"TwoStageDetector: '{name}' is required (a HEADS config)")
        unknown = set(train_cfg or {}) - set(DEFAULT_TRAIN_CFG)
        if unknown:
            raise ValueError(f"TwoStageDetector: unknown train_cfg key(s) {sorted(unknown)}; "
                             f"accepted: {sorted(DEFAULT_TRAIN_CFG)}")
        self.train_cfg = {**DEFAULT_TRAIN_CFG, **(train_cfg or {})}
        source, name = self._build_trunk(backbone, neck)
        specs = output_shape_of(source)
        strides = strides_of(specs) if specs else None
        self.rpn_head = self._checked(self._build_head(rpn_head, "rpn_head", source, name),
                                      "rpn_head", strides, name)
        self.roi_head = self._checked(self._build_head(roi_head, "roi_head", source, name),
                                      "roi_head", strides, name)

    @staticmethod
    def _checked(head, where: str, strides, source: str):
        """Refuse a head whose levels disagree with the features it will get."""
        head_strides = getattr(head, "strides", None)
        if strides is not None and head_strides is not None \
                and tuple(head_strides) != tuple(strides):
            raise ValueError(f"TwoStageDetector: {where} strides {tuple(head_strides)} "
                             f"({len(head_strides)} levels) disagree with the {source}'s "
                             f"out_strides {tuple(strides)} ({len(strides)} levels); "
                             f"drop 'strides' from the {where} config to inherit them")
        return head

    # ----------------------------------------------------------------- modes
    def loss(self, inputs, data_samples: Sequence[DetDataSample]) -> dict[str, Tensor]:
        if data_samples is None:
            raise ValueError("TwoStageDetector: mode='loss' needs data_samples with "
                             "gt_instances")
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        feats = self.extract_feat(batch)
        losses, proposals = self.rpn_head.loss_and_predict(
            feats, data_samples, proposal_cfg=self.train_cfg["rpn_proposal"])
        roi_losses = self.roi_head.loss(feats, proposals, data_samples)
        clash = set(losses) & set(roi_losses)
        if clash:
            raise ValueError(f"TwoStageDetector: rpn_head and roi_head both return "
                             f"loss key(s) {sorted(clash)}")
        return {**losses, **roi_losses}

    def predict(self, inputs, data_samples=None, rescale: bool = True) -> list[DetDataSample]:
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        feats = self.extract_feat(batch)
        proposals = self.rpn_head.predict(feats, data_samples)
        results = self.roi_head.predict(feats, proposals, data_samples)
        return self._attach_predictions(data_samples, results, rescale)

    def forward_tensor(self, inputs, data_samples=None):
        """The RPN outputs and the RoI head's class logits and deltas."""
        batch = self._batch_inputs(inputs)
        data_samples = self._complete_metainfo(batch, data_samples, inputs)
        feats = self.extract_feat(batch)
        proposals = self.rpn_head.predict(feats, data_samples)
        rois = self.roi_head.to_rois([p.bboxes for p in proposals])
        return self.rpn_head(feats), self.roi_head(feats, rois)
