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

The head is :class:`RPNHead` plus :class:`AnchorGuidance`: it inherits the
**RPN head interface** (``loss``, ``predict``, ``loss_and_predict``; proposals
in ``img_shape`` coordinates), the sampled losses and the proposal
selection, so that ``TwoStageDetector`` can use it as its ``rpn_head`` and
``SingleStageDetector`` + ``GARPNHead`` is an RPN-only proposal model.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads.rpn_head import RPNHead
from toolbox.models.layers.anchor_guidance import AnchorGuidance, check_levels, shape_thresholds
from toolbox.models.layers.feature_adaption import FeatureAdaption
from toolbox.structures.feature_spec import FeatureSpec

__all__ = ["GARPNHead"]

DEFAULT_APPROX_GENERATOR = dict(octave_base_scale=8, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
DEFAULT_SHAPE_ASSIGNER = dict(pos_iou_thr=0.7, min_pos_iou=0.3)
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3)
DEFAULT_SAMPLER = dict(num=256, pos_fraction=0.5)
DEFAULT_LOSS_CLS = dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, iou_thr=0.7, max_per_img=1000, min_bbox_size=0)


class GARPNHead(RPNHead):
    """Guided-anchoring region proposal head: :class:`RPNHead` on guided anchors.

    Every sub-config merges over the default named below; a loss of another
    ``type`` replaces it (docs/heads.md).

    Args:
        in_channels: channels of every input level (one int); from
            ``input_shape`` when absent.
        strides: stride of each input level; from ``input_shape`` when absent.
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
        input_shape: the input levels' :class:`FeatureSpec`.
    """

    owner = "GARPNHead"
    anchor_generator_arg = "approx_anchor_generator"
    default_anchor_generator = DEFAULT_APPROX_GENERATOR
    default_assigner = DEFAULT_ASSIGNER
    default_sampler = DEFAULT_SAMPLER
    default_loss_cls = DEFAULT_LOSS_CLS
    default_loss_bbox = DEFAULT_LOSS_BBOX
    default_test_cfg = DEFAULT_TEST_CFG

    def __init__(self, in_channels: int | Sequence[int] | None = None,
                 strides: Sequence[int] | None = None,
                 feat_channels: int = 256, sigma: float = 8.0,
                 approx_anchor_generator: dict | None = None, center_ratio: float = 0.2,
                 ignore_ratio: float = 0.5, shape_assigner: dict | None = None,
                 loc_filter_thr: float = 0.01, assigner: dict | None = None,
                 sampler: dict | None = None, bbox_coder: dict | None = None,
                 loss_loc: dict | None = None, loss_shape: dict | None = None,
                 loss_cls: dict | None = None, loss_bbox: dict | None = None,
                 test_cfg: dict | None = None,
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None):
        # read by _build_layers while RPNHead.__init__ builds the layers
        self.guidance_args = dict(sigma=sigma, center_ratio=center_ratio,
                                  ignore_ratio=ignore_ratio, shape_assigner=shape_assigner,
                                  loc_filter_thr=loc_filter_thr, loss_loc=loss_loc,
                                  loss_shape=loss_shape)
        super().__init__(in_channels, strides, feat_channels,
                         anchor_generator=approx_anchor_generator, assigner=assigner,
                         sampler=sampler, bbox_coder=bbox_coder, loss_cls=loss_cls,
                         loss_bbox=loss_bbox, test_cfg=test_cfg, ignore_padding=True,
                         input_shape=input_shape, init_cfg=init_cfg)
        del self.guidance_args

    def _build_layers(self) -> None:
        args = self.guidance_args
        pos_thr, min_pos = shape_thresholds(self.owner, args["shape_assigner"],
                                            DEFAULT_SHAPE_ASSIGNER)
        self.guidance = AnchorGuidance(
            self.owner, self.feat_channels, self.strides, args["sigma"], self.prior_generator,
            args["center_ratio"], args["ignore_ratio"], pos_thr, min_pos,
            args["loc_filter_thr"], args["loss_loc"], args["loss_shape"])
        self.num_base_priors = 1
        self.rpn_conv = nn.Conv2d(self.in_channels, self.feat_channels, 3, padding=1)
        self.adaption = FeatureAdaption(self.feat_channels, self.feat_channels)
        self.rpn_cls = nn.Conv2d(self.feat_channels, 1, 1)
        self.rpn_reg = nn.Conv2d(self.feat_channels, 4, 1)

    def _default_init(self) -> None:
        super()._default_init()
        self.guidance.init_weights()
        self.adaption.init_weights()

    @property
    def last_num_anchors(self) -> list[int]:
        """Anchors kept per image by the location filter (last loss / predict)."""
        return self.guidance.last_num_anchors

    @property
    def last_num_locations(self) -> int:
        return self.guidance.last_num_locations

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], ...]:
        """Per level: objectness logits [B, 1, H, W], deltas [B, 4, H, W],
        anchor shapes [B, 2, H, W] and location logits [B, 1, H, W]."""
        check_levels(self.owner, feats, self.strides)
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
    def loss_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                     data_samples) -> dict[str, Tensor]:
        self._check_batch(cls_scores, data_samples)
        guidance = self.guidance.loss(loc_preds, shape_preds, data_samples)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        anchors = torch.cat(self.guidance.guided_anchors(shape_preds), dim=1)  # [B, N, 4]
        inside = torch.stack([self.guidance.valid_cells(featmap_sizes,
                                                        s.metainfo.get("img_shape"), device)
                              for s in data_samples])
        flat_cls = torch.cat([c.flatten(1) for c in cls_scores], dim=1)  # [B, N]
        flat_reg = torch.cat([r.flatten(2) for r in bbox_preds], dim=2).transpose(1, 2)
        losses = self.sampled_losses(flat_cls, flat_reg, anchors, inside, data_samples)
        losses.update(guidance)
        keep = torch.cat(self.guidance.keep_masks(loc_preds), dim=1)
        kept = [int(k) for k in (keep & inside).sum(dim=1)]
        losses["num_anchors_kept"] = self.guidance.sparsity(kept, featmap_sizes, device)
        return losses

    # ------------------------------------------------------------------ predict
    def predict_by_feat(self, cls_scores, bbox_preds, shape_preds, loc_preds,
                        batch_img_metas: Sequence[dict], cfg: dict | None = None
                        ) -> list[InstanceData]:
        """Proposals (``bboxes``, ``scores``, ``labels`` = 0) in ``img_shape``
        coordinates, from the guided anchors that pass the location filter."""
        anchors = self.guidance.guided_anchors(shape_preds)
        keeps = self.guidance.keep_masks(loc_preds)
        kept = [sum(int(k[i].sum()) for k in keeps) for i in range(len(batch_img_metas))]
        self.guidance.sparsity(kept, [tuple(c.shape[-2:]) for c in cls_scores],
                               cls_scores[0].device)
        return self.propose_levels(cls_scores, bbox_preds, batch_img_metas, anchors,
                                   cfg or self.test_cfg, keeps)
