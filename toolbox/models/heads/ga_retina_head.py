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
were kept per image (``last_num_locations`` the number of cells; both kept
by the guidance), and the training loss dict logs the same count as
``num_anchors_kept``.

The head is :class:`RetinaHead` plus :class:`AnchorGuidance`: RetinaHead's
targets, losses and per-level decoding, on the guided anchors.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads.parts import flatten_levels
from toolbox.models.heads.retina_head import DEFAULT_ANCHOR_GENERATOR, RetinaHead
from toolbox.models.layers.anchor_guidance import AnchorGuidance, check_levels, shape_thresholds
from toolbox.models.layers.feature_adaption import FeatureAdaption
from toolbox.structures.feature_spec import FeatureSpec

__all__ = ["GARetinaHead"]

DEFAULT_APPROX_GENERATOR = DEFAULT_ANCHOR_GENERATOR
DEFAULT_SHAPE_ASSIGNER = dict(pos_iou_thr=0.5, min_pos_iou=0.4)
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0, ignore_iof_thr=0.5)
DEFAULT_LOSS_CLS = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="SmoothL1Loss", beta=0.04, loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=100)


class GARetinaHead(RetinaHead):
    """GA-RetinaNet head: :class:`RetinaHead` on guided anchors.

    Every sub-config merges over the default named below; a loss of another
    ``type`` replaces it (docs/heads.md).

    Args:
        num_classes: number of object classes (no background entry).
        in_channels: channels of every input level (the neck's width);
            from ``input_shape`` when absent.
        feat_channels: width of the two conv towers.
        stacked_convs: 3x3 conv layers per tower.
        strides: stride of each input level (from ``input_shape`` when
            absent, else 8 to 128).
        sigma: guided-anchor size unit, in strides (8 in the paper).
        approx_anchor_generator: :class:`AnchorGenerator` arguments of the 9
            approxs per cell used for shape targets (default RetinaNet's:
            octave_base_scale 4, 3 scales per octave, ratios 0.5 / 1 / 2).
        center_ratio, ignore_ratio: location-target regions (0.2, 0.5).
        shape_assigner: ``pos_iou_thr`` / ``min_pos_iou`` of the shape
            targets (default 0.5 / 0.4).
        loc_filter_thr: location probability an anchor needs to be kept.
        assigner: :class:`MaxIoUAssigner` arguments for the guided anchors
            (default pos 0.5, neg 0.5, low-quality matches, ``ignore_iof_thr`` 0.5).
        bbox_coder: :class:`DeltaXYWHBBoxCoder` arguments (deltas from the
            guided anchors).
        loss_loc, loss_shape, loss_cls, loss_bbox: ``LOSSES`` configs (focal,
            bounded IoU beta 0.2, focal, smooth L1 beta 0.04; ``L1Loss`` or
            ``GIoULoss`` work as box losses too).
        norm_cfg: norm layer of the towers and of the feature adaptions
            (after their deformable conv); None for conv + ReLU (the paper).
        test_cfg: ``nms_pre``, ``score_thr``, ``iou_thr``, ``max_per_img``.
        prior_prob: initial foreground probability (classifier bias).
        feature_adaption: False drops the two adaptions (the paper's ablation
            "w/o feature adaption"): the classifier and regressor read the
            towers' features, the shapes still set the anchors.
        input_shape: the input levels' :class:`FeatureSpec`.
    """

    owner = "GARetinaHead"
    anchor_generator_arg = "approx_anchor_generator"
    default_anchor_generator = DEFAULT_APPROX_GENERATOR
    default_assigner = DEFAULT_ASSIGNER
    default_loss_cls = DEFAULT_LOSS_CLS
    default_loss_bbox = DEFAULT_LOSS_BBOX
    default_test_cfg = DEFAULT_TEST_CFG

    def __init__(self, num_classes: int, in_channels: int | Sequence[int] | None = None,
                 feat_channels: int = 256, stacked_convs: int = 4,
                 strides: Sequence[int] | None = None, sigma: float = 8.0,
                 approx_anchor_generator: dict | None = None, center_ratio: float = 0.2,
                 ignore_ratio: float = 0.5, shape_assigner: dict | None = None,
                 loc_filter_thr: float = 0.01, assigner: dict | None = None,
                 bbox_coder: dict | None = None, loss_loc: dict | None = None,
                 loss_shape: dict | None = None, loss_cls: dict | None = None,
                 loss_bbox: dict | None = None, norm_cfg: dict | None = None,
                 test_cfg: dict | None = None, prior_prob: float = 0.01,
                 feature_adaption: bool = True,
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None):
        # read by _build_layers while RetinaHead.__init__ builds the layers
        self.guidance_args = dict(feature_adaption=feature_adaption, sigma=sigma,
                                  center_ratio=center_ratio,
                                  ignore_ratio=ignore_ratio, shape_assigner=shape_assigner,
                                  loc_filter_thr=loc_filter_thr, loss_loc=loss_loc,
                                  loss_shape=loss_shape)
        super().__init__(num_classes, in_channels, feat_channels, stacked_convs, strides,
                         anchor_generator=approx_anchor_generator, assigner=assigner,
                         bbox_coder=bbox_coder, loss_cls=loss_cls, loss_bbox=loss_bbox,
                         norm_cfg=norm_cfg, test_cfg=test_cfg, prior_prob=prior_prob,
                         input_shape=input_shape, init_cfg=init_cfg)
        del self.guidance_args

    def _build_layers(self, norm_cfg) -> None:
        if not self.use_sigmoid_cls:
            raise ValueError("GARetinaHead: 'loss_cls' must be a sigmoid loss (FocalLoss, or "
                             "CrossEntropyLoss with use_sigmoid=True)")
        args = self.guidance_args
        pos_thr, min_pos = shape_thresholds(self.owner, args["shape_assigner"],
                                            DEFAULT_SHAPE_ASSIGNER)
        last = self.feat_channels if self.stacked_convs > 0 else self.in_channels
        self.guidance = AnchorGuidance(
            self.owner, last, self.strides, args["sigma"], self.prior_generator,
            args["center_ratio"], args["ignore_ratio"], pos_thr, min_pos,
            args["loc_filter_thr"], args["loss_loc"], args["loss_shape"])
        self.num_base_priors = 1
        self.cls_convs = self._tower(norm_cfg)
        self.reg_convs = self._tower(norm_cfg)
        adapt = args["feature_adaption"]
        self.adapt_cls, self.adapt_reg = (
            (FeatureAdaption(last, self.feat_channels, norm_cfg=norm_cfg),
             FeatureAdaption(last, self.feat_channels, norm_cfg=norm_cfg))
            if adapt else (None, None))
        width = self.feat_channels if adapt else last
        self.retina_cls = nn.Conv2d(width, self.num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(width, 4, 3, padding=1)

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
        for adaption in (self.adapt_cls, self.adapt_reg):
            if adaption is not None:
                adaption.init_weights()

    @property
    def last_num_anchors(self) -> list[int]:
        """Anchors kept per image by the location filter (last loss / predict)."""
        return self.guidance.last_num_anchors

    @property
    def last_num_locations(self) -> int:
        return self.guidance.last_num_locations

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], ...]:
        """Per level: class logits [B, C, H, W], deltas [B, 4, H, W], anchor
        shapes [B, 2, H, W] and location logits [B, 1, H, W]."""
        check_levels(self.owner, feats, self.strides)
        cls_scores, bbox_preds, shape_preds, loc_preds = [], [], [], []
        for feat in feats:
            cls_feat, reg_feat = self.cls_convs(feat), self.reg_convs(feat)
            loc_pred, shape_pred = self.guidance(cls_feat, reg_feat)
            if self.adapt_cls is not None:
                cls_feat = self.adapt_cls(cls_feat, shape_pred)
                reg_feat = self.adapt_reg(reg_feat, shape_pred)
            cls_scores.append(self.retina_cls(cls_feat))
            bbox_preds.append(self.retina_reg(reg_feat))
            shape_preds.append(shape_pred)
            loc_preds.append(loc_pred)
        return cls_scores, bbox_preds, shape_preds, loc_preds

    # --------------------------------------------------------------------- loss
    def loss_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                     data_samples) -> dict[str, Tensor]:
        self._check_batch(cls_scores, data_samples)
        losses = self.guidance.loss(loc_preds, shape_preds, data_samples)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        anchors = torch.cat(self.guidance.guided_anchors(shape_preds), dim=1)  # [B, N, 4]
        inside = torch.stack([self.guidance.valid_cells(featmap_sizes,
                                                        s.metainfo.get("img_shape"), device)
                              for s in data_samples])
        losses.update(self.anchor_losses(flatten_levels(cls_scores, self.num_classes),
                                         flatten_levels(bbox_preds, 4), anchors, inside,
                                         data_samples))
        keep = torch.cat(self.guidance.keep_masks(loc_preds), dim=1)
        kept = [int(k) for k in (keep & inside).sum(dim=1)]
        losses["num_anchors_kept"] = self.guidance.sparsity(kept, featmap_sizes, device)
        return losses

    # ------------------------------------------------------------------ predict
    def predict_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                        batch_img_metas: Sequence[dict]) -> list[InstanceData]:
        """Detections per image in ``img_shape`` coordinates, from the
        guided anchors that pass the location filter."""
        anchors = self.guidance.guided_anchors(shape_preds)
        keeps = self.guidance.keep_masks(loc_preds)
        kept = [sum(int(k[i].sum()) for k in keeps) for i in range(len(batch_img_metas))]
        self.guidance.sparsity(kept, [tuple(c.shape[-2:]) for c in cls_scores],
                               cls_scores[0].device)
        return self.decode_levels(cls_scores, bbox_preds, batch_img_metas, anchors, keeps)
