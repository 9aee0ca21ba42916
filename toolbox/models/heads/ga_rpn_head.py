"""GA-RPN: region proposals from guided anchors (Wang et al., "Region
Proposal by Guided Anchoring", CVPR 2019).

A 3x3 conv + ReLU shared by every level (the RPN's), then the guided-anchor
branches (:class:`AnchorGuidance`: location logit and anchor shape per
cell, one anchor per cell with ``w = sigma * stride * exp(dw)``), feature
adaption (a deformable 3x3 conv driven by the shape) and two 1x1 convs: an
objectness logit and four deltas from the guided anchor.

Training: location (focal) and shape (bounded IoU) losses, plus the RPN's
losses on the detached guided anchors of every cell inside the image:
IoU assignment (0.7 / 0.3), 256 sampled anchors with at most half positive,
sigmoid cross-entropy and a box loss averaged over the sampled anchors.
Inference keeps the cells whose location probability is above
``loc_filter_thr`` (``last_num_anchors`` records how many per image), then
the ``nms_pre`` best per level, decodes them, drops boxes not larger than
``min_bbox_size``, runs NMS per level and keeps ``max_per_img``.

Implements the **RPN head interface** of ``RPNHead`` (``loss``,
``predict``, ``loss_and_predict``) so that ``TwoStageDetector`` can use it
as its ``rpn_head`` and ``SingleStageDetector`` + ``GARPNHead`` is an
RPN-only proposal model.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads._common import (build_loss, build_part, finish_proposals, ground_truth,
                                          merge_cfg, regression_pair, sample_metas)
from toolbox.models.heads._guided_anchor import AnchorGuidance, check_levels, shape_thresholds
from toolbox.models.layers.feature_adaption import FeatureAdaption
from toolbox.structures import DeltaXYWHBBoxCoder, MaxIoUAssigner
from toolbox.structures.nms import proposal_nms
from toolbox.structures.random_sampler import RandomSampler

__all__ = ["GARPNHead"]

DEFAULT_APPROX_GENERATOR = dict(octave_base_scale=8, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
DEFAULT_SHAPE_ASSIGNER = dict(pos_iou_thr=0.7, min_pos_iou=0.3)
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3)
DEFAULT_SAMPLER = dict(num=256, pos_fraction=0.5)
DEFAULT_LOSS_CLS = dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, iou_thr=0.7, max_per_img=1000, min_bbox_size=0)


class GARPNHead(BaseModule):
    """Guided-anchoring region proposal head.

    Args:
        in_channels: channels of every input level (one int).
        strides: stride of each input level.
        feat_channels: width of the shared 3x3 conv.
        sigma: guided-anchor size unit, in strides (8 in the paper).
        approx_anchor_generator: :class:`AnchorGenerator` arguments of the 9
            approxs per cell (default octave_base_scale 8, 3 scales per
            octave, ratios 0.5 / 1 / 2).
        center_ratio, ignore_ratio: location-target regions (0.2, 0.5).
        shape_assigner: ``pos_iou_thr`` / ``min_pos_iou`` of the shape
            targets (default 0.7 / 0.3).
        loc_filter_thr: location probability an anchor needs to be kept.
        assigner: :class:`MaxIoUAssigner` arguments (default 0.7 / 0.3).
        sampler: :class:`RandomSampler` arguments (default 256, 50 %).
        bbox_coder: :class:`DeltaXYWHBBoxCoder` arguments.
        loss_loc, loss_shape, loss_cls, loss_bbox: ``LOSSES`` configs (focal,
            bounded IoU, sigmoid cross-entropy, smooth L1 beta 1/9).
        test_cfg: ``nms_pre``, ``iou_thr``, ``max_per_img``, ``min_bbox_size``.
    """

    def __init__(self, in_channels: int | Sequence[int], strides: Sequence[int],
                 feat_channels: int = 256, sigma: float = 8.0,
                 approx_anchor_generator: dict | None = None, center_ratio: float = 0.2,
                 ignore_ratio: float = 0.5, shape_assigner: dict | None = None,
                 loc_filter_thr: float = 0.01, assigner: dict | None = None,
                 sampler: dict | None = None, bbox_coder: dict | None = None,
                 loss_loc: dict | None = None, loss_shape: dict | None = None,
                 loss_cls: dict | None = None, loss_bbox: dict | None = None,
                 test_cfg: dict | None = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int):
            widths = set(in_channels)
            if len(widths) != 1:
                raise ValueError("GARPNHead: 'in_channels' must be one int (its convs are "
                                 f"shared by all levels), got widths {tuple(in_channels)}")
            in_channels = widths.pop()
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.strides = tuple(strides)
        pos_thr, min_pos = shape_thresholds("GARPNHead", shape_assigner, DEFAULT_SHAPE_ASSIGNER)
        self.guidance = AnchorGuidance(
            "GARPNHead", feat_channels, self.strides, sigma,
            approx_anchor_generator or DEFAULT_APPROX_GENERATOR, center_ratio, ignore_ratio,
            pos_thr, min_pos, loc_filter_thr, loss_loc, loss_shape)
        self.assigner = build_part({**DEFAULT_ASSIGNER, **(assigner or {})}, MaxIoUAssigner,
                                   "GARPNHead.assigner")
        self.sampler = build_part({**DEFAULT_SAMPLER, **(sampler or {})}, RandomSampler,
                                  "GARPNHead.sampler")
        self.bbox_coder = build_part(bbox_coder or {}, DeltaXYWHBBoxCoder, "GARPNHead.bbox_coder")
        self.loss_cls = build_loss(loss_cls or DEFAULT_LOSS_CLS)
        self.loss_bbox = build_loss(loss_bbox or DEFAULT_LOSS_BBOX)
        if not getattr(self.loss_cls, "use_sigmoid", False):
            raise ValueError("GARPNHead: 'loss_cls' must be a sigmoid loss (one objectness "
                             "logit per anchor), e.g. dict(type='CrossEntropyLoss', "
                             "use_sigmoid=True)")
        self.reg_decoded_bbox = bool(getattr(self.loss_bbox, "expects_boxes", False))
        self.test_cfg = merge_cfg("GARPNHead", DEFAULT_TEST_CFG, test_cfg, "test_cfg")

        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.adaption = FeatureAdaption(feat_channels, feat_channels)
        self.rpn_cls = nn.Conv2d(feat_channels, 1, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, 4, 1)
        self.last_num_anchors: list[int] = []
        self.last_num_locations = 0
        self._default_init()

    def _default_init(self) -> None:
        for module in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)
        self.guidance.init_weights()
        self.adaption.init_weights()

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            self._default_init()

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], ...]:
        """Per level: objectness logits [B, 1, H, W], deltas [B, 4, H, W],
        anchor shapes [B, 2, H, W] and location logits [B, 1, H, W]."""
        check_levels("GARPNHead", feats, self.strides)
        cls_scores, bbox_preds, shape_preds, loc_preds = [], [], [], []
        for feat in feats:
            x = torch.relu(self.rpn_conv(feat))
            loc_pred, shape_pred = self.guidance(x, x)
            x = self.adaption(x, shape_pred)
            cls_scores.append(self.rpn_cls(x))
            bbox_preds.append(self.rpn_reg(x))
            shape_preds.append(shape_pred)
            loc_preds.append(loc_pred)
        return cls_scores, bbox_preds, shape_preds, loc_preds

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], data_samples) -> dict[str, Tensor]:
        return self.loss_by_feat(*self(feats), data_samples)

    def loss_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                     data_samples) -> dict[str, Tensor]:
        if len(data_samples) != cls_scores[0].shape[0]:
            raise ValueError(f"GARPNHead.loss: {len(data_samples)} data samples for a batch "
                             f"of {cls_scores[0].shape[0]} images")
        guidance = self.guidance.loss(loc_preds, shape_preds, data_samples)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        anchors = torch.cat(self.guidance.guided_anchors(shape_preds), dim=1)  # [B, N, 4]
        flat_cls = torch.cat([c.flatten(1) for c in cls_scores], dim=1)  # [B, N]
        flat_reg = torch.cat([r.flatten(2) for r in bbox_preds], dim=2).transpose(1, 2)
        keep = torch.cat(self.guidance.keep_masks(loc_preds), dim=1)
        logits, labels, deltas, targets, kept = [], [], [], [], []
        for i, sample in enumerate(data_samples):
            gt_boxes, _, ignored = ground_truth(sample, device, 2 ** 31 - 1, "GARPNHead")
            gt_inds, num_kept = self.guidance.assign(
                self.assigner, anchors[i], keep[i], featmap_sizes,
                sample.metainfo.get("img_shape"), gt_boxes, None, ignored)
            kept.append(num_kept)
            pos, neg = self.sampler.sample(gt_inds)
            logits.append(flat_cls[i, torch.cat([pos, neg])])
            labels.append(torch.cat([pos.new_zeros(pos.numel()), neg.new_ones(neg.numel())]))
            pred, target = regression_pair(self.bbox_coder, self.reg_decoded_bbox, anchors[i, pos],
                                           flat_reg[i, pos], gt_boxes[gt_inds[pos] - 1])
            deltas.append(pred)
            targets.append(target)
        logits, labels = torch.cat(logits), torch.cat(labels)
        num_samples = max(float(labels.numel()), 1.0)
        # one sigmoid "class": label 0 = object, 1 (= num_classes) = background
        losses = dict(loss_rpn_cls=self.loss_cls(logits[:, None], labels, avg_factor=num_samples))
        deltas, targets = torch.cat(deltas), torch.cat(targets)
        if deltas.numel():
            losses["loss_rpn_bbox"] = self.loss_bbox(deltas, targets, avg_factor=num_samples)
        else:  # keep the regression branch in the graph (DDP needs every parameter)
            losses["loss_rpn_bbox"] = flat_reg.sum() * 0.0
        losses.update(guidance)
        losses["num_anchors_kept"] = self.guidance.sparsity(self, kept, featmap_sizes, device)
        return losses

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None,
                rescale: bool = True) -> list[InstanceData]:
        """Proposals per image (``bboxes``, ``scores``, ``labels`` = 0); with
        ``rescale`` in original-image coordinates, else in ``img_shape``."""
        outputs = self(feats)
        metas = sample_metas(data_samples, outputs[0][0].shape[0])
        proposals = self.predict_by_feat(*outputs, metas, self.test_cfg)
        return finish_proposals(proposals, metas, rescale)

    def loss_and_predict(self, feats: Sequence[Tensor], data_samples,
                         proposal_cfg: dict | None = None
                         ) -> tuple[dict[str, Tensor], list[InstanceData]]:
        """Losses and detached proposals (``img_shape`` coordinates) from one
        forward pass; ``proposal_cfg`` overrides keys of ``test_cfg``."""
        outputs = self(feats)
        losses = self.loss_by_feat(*outputs, data_samples)
        cfg = merge_cfg("GARPNHead", self.test_cfg, proposal_cfg, "proposal_cfg")
        metas = sample_metas(data_samples, outputs[0][0].shape[0])
        with torch.no_grad():
            proposals = self.predict_by_feat(*[[t.detach() for t in o] for o in outputs],
                                             metas, cfg)
        return losses, proposals

    def predict_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                        batch_img_metas: Sequence[dict], cfg: dict | None = None
                        ) -> list[InstanceData]:
        """Proposals (``bboxes``, ``scores``) in ``img_shape`` coordinates."""
        cfg = cfg or self.test_cfg
        anchors = self.guidance.guided_anchors(shape_preds)
        keeps = self.guidance.keep_masks(loc_preds)
        results, kept = [], []
        for i, meta in enumerate(batch_img_metas):
            img_shape = meta.get("img_shape")
            boxes, scores, count = [], [], 0
            for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
                keep = keeps[level][i]
                count += int(keep.sum())
                score = cls[i].reshape(-1)[keep].sigmoid()
                delta = reg[i].flatten(1).t()[keep]
                prior = anchors[level][i][keep]
                if 0 < cfg["nms_pre"] < score.numel():
                    score, top = score.topk(int(cfg["nms_pre"]))
                    delta, prior = delta[top], prior[top]
                boxes.append(self.bbox_coder.decode(prior, delta, max_shape=img_shape))
                scores.append(score)
            kept_boxes, kept_scores = proposal_nms(boxes, scores, cfg["min_bbox_size"],
                                                   cfg["iou_thr"], cfg["max_per_img"])
            results.append(InstanceData(bboxes=kept_boxes, scores=kept_scores))
            kept.append(count)
        self.last_num_anchors = kept
        self.last_num_locations = sum(int(c.shape[-2] * c.shape[-1]) for c in cls_scores)
        return results
