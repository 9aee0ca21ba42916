"""Guided Anchoring on RetinaNet's head (Wang et al., "Region Proposal by
Guided Anchoring", CVPR 2019, GA-RetinaNet).

RetinaNet's two conv towers, then per level:

1. the guided-anchor branches (:class:`AnchorGuidance`): a location logit
   from the classification tower and an anchor shape ``(dw, dh)`` from the
   regression tower; one anchor per cell, ``w = sigma * stride * exp(dw)``;
2. feature adaption: each tower's features go through a deformable 3x3 conv
   whose offsets come from the predicted shape (:class:`FeatureAdaption`;
   normalised like the towers when ``norm_cfg`` is set);
3. class logits and box deltas on the adapted features, one anchor per cell.

Training adds the location (focal) and shape (bounded IoU) losses to
RetinaNet's: anchors are the (detached) guided anchors of every cell inside
the image, assigned by IoU, focal loss on the non-ignored ones and the box
loss on the positives, both divided by the number of positives. At
inference only the cells whose location probability is above
``loc_filter_thr`` keep their anchor; ``last_num_anchors`` records how many
were kept per image (``last_num_locations`` the number of cells), and the
training loss dict logs the same count as ``num_anchors_kept``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads._common import (boxes_to_original, build_loss, build_part, ground_truth,
                                          regression_pair, sample_metas)
from toolbox.models.heads._guided_anchor import AnchorGuidance, check_levels, shape_thresholds
from toolbox.models.layers.feature_adaption import FeatureAdaption
from toolbox.structures import (DeltaXYWHBBoxCoder, MaxIoUAssigner, batched_nms_postprocess,
                                filter_scores_and_topk)

__all__ = ["GARetinaHead"]

DEFAULT_APPROX_GENERATOR = dict(octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
DEFAULT_SHAPE_ASSIGNER = dict(pos_iou_thr=0.5, min_pos_iou=0.4)
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0, ignore_iof_thr=0.5)
DEFAULT_LOSS_CLS = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="SmoothL1Loss", beta=0.04, loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=100)



class GARetinaHead(BaseModule):
    """GA-RetinaNet head.

    Args:
        num_classes: number of object classes (no background entry).
        in_channels: channels of every input level (the neck's width).
        feat_channels: width of the two conv towers.
        stacked_convs: 3x3 conv layers per tower.
        strides: stride of each input level.
        sigma: guided-anchor size unit, in strides (8 in the paper).
        approx_anchor_generator: :class:`AnchorGenerator` arguments of the 9
            approxs per cell used for shape targets (default RetinaNet's:
            octave_base_scale 4, 3 scales per octave, ratios 0.5 / 1 / 2).
        center_ratio, ignore_ratio: location-target regions (0.2, 0.5).
        shape_assigner: ``pos_iou_thr`` / ``min_pos_iou`` of the shape
            targets (default 0.5 / 0.4).
        loc_filter_thr: location probability an anchor needs to be kept.
        assigner: :class:`MaxIoUAssigner` arguments for the guided anchors
            (default pos 0.5, neg 0.5, low-quality matches).
        bbox_coder: :class:`DeltaXYWHBBoxCoder` arguments (deltas from the
            guided anchors).
        loss_loc, loss_shape, loss_cls, loss_bbox: ``LOSSES`` configs (focal,
            bounded IoU beta 0.2, focal, smooth L1 beta 0.04; ``L1Loss`` or
            ``GIoULoss`` work as box losses too).
        norm_cfg: norm layer of the towers and of the feature adaptions
            (after their deformable conv); None for conv + ReLU (the paper).
        test_cfg: ``nms_pre``, ``score_thr``, ``iou_thr``, ``max_per_img``.
        prior_prob: initial foreground probability (classifier bias).
    """

    def __init__(self, num_classes: int, in_channels: int | Sequence[int],
                 feat_channels: int = 256, stacked_convs: int = 4,
                 strides: Sequence[int] = (8, 16, 32, 64, 128), sigma: float = 8.0,
                 approx_anchor_generator: dict | None = None, center_ratio: float = 0.2,
                 ignore_ratio: float = 0.5, shape_assigner: dict | None = None,
                 loc_filter_thr: float = 0.01, assigner: dict | None = None,
                 bbox_coder: dict | None = None, loss_loc: dict | None = None,
                 loss_shape: dict | None = None, loss_cls: dict | None = None,
                 loss_bbox: dict | None = None, norm_cfg: dict | None = None,
                 test_cfg: dict | None = None, prior_prob: float = 0.01, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"GARetinaHead: 'num_classes' must be a positive int, "
                             f"got {num_classes!r}")
        if not isinstance(in_channels, int):
            widths = set(in_channels)
            if len(widths) != 1:
                raise ValueError("GARetinaHead: 'in_channels' must be one int (its towers are "
                                 f"shared by all levels), got widths {tuple(in_channels)}")
            in_channels = widths.pop()
        if not 0 < prior_prob < 1:
            raise ValueError(f"GARetinaHead: 'prior_prob' must be in (0, 1), got {prior_prob}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = tuple(strides)
        self.prior_prob = prior_prob
        pos_thr, min_pos = shape_thresholds("GARetinaHead", shape_assigner, DEFAULT_SHAPE_ASSIGNER)
        last = feat_channels if stacked_convs > 0 else in_channels
        self.guidance = AnchorGuidance(
            "GARetinaHead", last, self.strides, sigma,
            approx_anchor_generator or DEFAULT_APPROX_GENERATOR, center_ratio, ignore_ratio,
            pos_thr, min_pos, loc_filter_thr, loss_loc, loss_shape)
        self.assigner = build_part(assigner or DEFAULT_ASSIGNER, MaxIoUAssigner,
                                   "GARetinaHead.assigner")
        self.bbox_coder = build_part(bbox_coder or {}, DeltaXYWHBBoxCoder,
                                     "GARetinaHead.bbox_coder")
        self.loss_cls = build_loss(loss_cls or DEFAULT_LOSS_CLS)
        self.loss_bbox = build_loss(loss_bbox or DEFAULT_LOSS_BBOX)
        if not getattr(self.loss_cls, "use_sigmoid", True):
            raise ValueError("GARetinaHead: 'loss_cls' must be a sigmoid loss (FocalLoss, or "
                             "CrossEntropyLoss with use_sigmoid=True)")
        self.reg_decoded_bbox = bool(getattr(self.loss_bbox, "expects_boxes", False))
        unknown = set(test_cfg or {}) - set(DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(f"GARetinaHead: unknown test_cfg key(s) {sorted(unknown)}; "
                             f"accepted: {sorted(DEFAULT_TEST_CFG)}")
        self.test_cfg = {**DEFAULT_TEST_CFG, **(test_cfg or {})}

        self.cls_convs = self._tower(norm_cfg)
        self.reg_convs = self._tower(norm_cfg)
        self.adapt_cls = FeatureAdaption(last, feat_channels, norm_cfg=norm_cfg)
        self.adapt_reg = FeatureAdaption(last, feat_channels, norm_cfg=norm_cfg)
        self.retina_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.last_num_anchors: list[int] = []
        self.last_num_locations = 0
        self._default_init()

    def _tower(self, norm_cfg) -> nn.Sequential:
        return nn.Sequential(*[ConvModule(self.in_channels if i == 0 else self.feat_channels,
                                          self.feat_channels, 3, padding=1, norm_cfg=norm_cfg)
                               for i in range(self.stacked_convs)])

    def _default_init(self) -> None:
        """Normal(0, 0.01) convs, classifier bias so that p(fg) = prior_prob,
        the guidance branches' and adaptions' own initialisation."""
        for module in [*self.cls_convs.modules(), *self.reg_convs.modules(),
                       self.retina_cls, self.retina_reg]:
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.retina_cls.bias, -math.log((1 - self.prior_prob) / self.prior_prob))
        self.guidance.init_weights()
        self.adapt_cls.init_weights()
        self.adapt_reg.init_weights()

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            self._default_init()

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], ...]:
        """Per level: class logits [B, C, H, W], deltas [B, 4, H, W], anchor
        shapes [B, 2, H, W] and location logits [B, 1, H, W]."""
        check_levels("GARetinaHead", feats, self.strides)
        cls_scores, bbox_preds, shape_preds, loc_preds = [], [], [], []
        for feat in feats:
            cls_feat, reg_feat = self.cls_convs(feat), self.reg_convs(feat)
            loc_pred, shape_pred = self.guidance(cls_feat, reg_feat)
            cls_scores.append(self.retina_cls(self.adapt_cls(cls_feat, shape_pred)))
            bbox_preds.append(self.retina_reg(self.adapt_reg(reg_feat, shape_pred)))
            shape_preds.append(shape_pred)
            loc_preds.append(loc_pred)
        return cls_scores, bbox_preds, shape_preds, loc_preds

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], data_samples) -> dict[str, Tensor]:
        return self.loss_by_feat(*self(feats), data_samples)

    def loss_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                     data_samples) -> dict[str, Tensor]:
        if len(data_samples) != cls_scores[0].shape[0]:
            raise ValueError(f"GARetinaHead.loss: {len(data_samples)} data samples for a batch "
                             f"of {cls_scores[0].shape[0]} images")
        losses = self.guidance.loss(loc_preds, shape_preds, data_samples)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        anchors = torch.cat(self.guidance.guided_anchors(shape_preds), dim=1)  # [B, N, 4]
        flat_cls = torch.cat([c.flatten(2) for c in cls_scores], dim=2).transpose(1, 2)
        flat_reg = torch.cat([r.flatten(2) for r in bbox_preds], dim=2).transpose(1, 2)
        keep = torch.cat(self.guidance.keep_masks(loc_preds), dim=1)
        logits, labels, deltas, targets, kept = [], [], [], [], []
        for i, sample in enumerate(data_samples):
            gt_boxes, gt_labels, ignored = ground_truth(sample, device, self.num_classes,
                                                        "GARetinaHead")
            gt_inds, num_kept = self.guidance.assign(
                self.assigner, anchors[i], keep[i], featmap_sizes,
                sample.metainfo.get("img_shape"), gt_boxes, gt_labels, ignored)
            kept.append(num_kept)
            counted, pos = gt_inds >= 0, gt_inds > 0
            label = torch.full_like(gt_inds, self.num_classes)
            label[pos] = gt_labels[gt_inds[pos] - 1]
            logits.append(flat_cls[i, counted])
            labels.append(label[counted])
            pred, target = regression_pair(self.bbox_coder, self.reg_decoded_bbox, anchors[i, pos],
                                           flat_reg[i, pos], gt_boxes[gt_inds[pos] - 1])
            deltas.append(pred)
            targets.append(target)
        labels = torch.cat(labels)
        num_pos = max(float((labels < self.num_classes).sum()), 1.0)
        losses["loss_cls"] = self.loss_cls(torch.cat(logits), labels, avg_factor=num_pos)
        deltas, targets = torch.cat(deltas), torch.cat(targets)
        if deltas.numel():
            losses["loss_bbox"] = self.loss_bbox(deltas, targets, avg_factor=num_pos)
        else:  # keep the regression branch in the graph (DDP needs every parameter)
            losses["loss_bbox"] = flat_reg.sum() * 0.0
        losses["num_anchors_kept"] = self.guidance.sparsity(self, kept, featmap_sizes, device)
        return losses

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None,
                rescale: bool = True) -> list[InstanceData]:
        """Detections per image; with ``rescale`` in original-image
        coordinates, else in ``img_shape`` coordinates."""
        outputs = self(feats)
        batch = outputs[0][0].shape[0]
        metas = sample_metas(data_samples, batch)
        return self.predict_by_feat(*outputs, metas, rescale=rescale)

    def predict_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                        batch_img_metas: Sequence[dict], rescale: bool = True
                        ) -> list[InstanceData]:
        anchors = self.guidance.guided_anchors(shape_preds)
        keeps = self.guidance.keep_masks(loc_preds)
        cfg = self.test_cfg
        results, kept = [], []
        for i, meta in enumerate(batch_img_metas):
            img_shape = meta.get("img_shape")
            all_boxes, all_scores, all_labels, count = [], [], [], 0
            for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
                keep = keeps[level][i]
                count += int(keep.sum())
                scores = cls[i].flatten(1).t()[keep].sigmoid()
                deltas = reg[i].flatten(1).t()[keep]
                scores, labels, idx = filter_scores_and_topk(scores, cfg["score_thr"],
                                                             cfg["nms_pre"])
                all_boxes.append(self.bbox_coder.decode(anchors[level][i][keep][idx],
                                                        deltas[idx], max_shape=img_shape))
                all_scores.append(scores)
                all_labels.append(labels)
            boxes, scores, labels = batched_nms_postprocess(
                torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels),
                cfg["iou_thr"], cfg["max_per_img"])
            if rescale:
                boxes = boxes_to_original(boxes, meta)
            results.append(InstanceData(bboxes=boxes, scores=scores, labels=labels))
            kept.append(count)
        self.last_num_anchors = kept
        self.last_num_locations = sum(int(c.shape[-2] * c.shape[-1]) for c in cls_scores)
        return results
