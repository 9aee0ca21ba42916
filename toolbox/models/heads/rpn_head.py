"""Region Proposal Network head (Ren et al., "Faster R-CNN", with FPN as in
Lin et al., "Feature Pyramid Networks for Object Detection").

One 3x3 conv shared by every pyramid level, then two 1x1 convs: an
objectness logit (sigmoid) and four box deltas for each of the ``A``
anchors of a cell. Training assigns anchors by IoU (positive >= 0.7,
negative < 0.3, each ground truth also claims its best anchors), samples
256 anchors per image with at most half positives, and averages both losses
over the sampled anchors. Inference keeps the ``nms_pre`` best anchors of
each level, decodes them, drops tiny boxes and runs NMS (per level, as
torchvision's and mmdetection's RPNs do) before keeping ``max_per_img``.

The **RPN head interface** (``GARPNHead`` implements it too), used by
:class:`~toolbox.models.detectors.two_stage.TwoStageDetector`:

* ``loss(feats, data_samples) -> {'loss_rpn_cls', 'loss_rpn_bbox'}``;
* ``predict(feats, data_samples) -> list[InstanceData]`` with ``bboxes``,
  ``scores`` and ``labels`` (all 0) in ``img_shape`` coordinates, so that a
  ``SingleStageDetector`` with this head is an RPN-only proposal model (the
  detector maps them to the original image);
* ``loss_and_predict(feats, data_samples, proposal_cfg=None) -> (losses,
  proposals)``: detached proposals in ``img_shape`` coordinates;
  ``proposal_cfg`` overrides keys of ``test_cfg``.

``GARPNHead`` is this head plus :class:`AnchorGuidance`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads.dense import (CLASS_AGNOSTIC, assign_inside, inside_flags,
                                        regression_loss, select_proposals)
from toolbox.models.heads.parts import (flatten_levels, ground_truth, loss_with_defaults,
                                        merge_cfg, regression_pair, resolve_input_shape,
                                        sample_metas, uniform_channels, with_defaults)
from toolbox.structures import AnchorGenerator, DeltaXYWHBBoxCoder, MaxIoUAssigner
from toolbox.structures.feature_spec import FeatureSpec
from toolbox.structures.random_sampler import RandomSampler

__all__ = ["RPNHead"]

DEFAULT_ANCHOR_GENERATOR = dict(scales=(8.0,), ratios=(0.5, 1.0, 2.0))
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                        match_low_quality=True, ignore_iof_thr=-1.0)
DEFAULT_SAMPLER = dict(num=256, pos_fraction=0.5, neg_pos_ub=-1)
DEFAULT_LOSS_CLS = dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="L1Loss", loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, iou_thr=0.7, max_per_img=1000, min_bbox_size=0,
                        min_score=0.0)


class RPNHead(BaseModule):
    """Anchor-based region proposal head.

    Every sub-config merges over the default named below; a loss of another
    ``type`` replaces it (docs/heads.md).

    Args:
        in_channels: channels of every input level (one int; a tuple of equal
            widths is accepted); from ``input_shape`` when absent.
        strides: stride of each input level (fills the anchor generator's);
            from ``input_shape`` when absent.
        feat_channels: width of the shared 3x3 conv.
        anchor_generator: :class:`AnchorGenerator` arguments (default scale
            8, ratios 0.5 / 1 / 2: three anchors per cell).
        assigner: :class:`MaxIoUAssigner` arguments (default 0.7 / 0.3,
            low-quality matches down to 0.3).
        sampler: :class:`RandomSampler` arguments (default 256 anchors, 50 %
            positives).
        bbox_coder: :class:`DeltaXYWHBBoxCoder` arguments (default means 0,
            stds 1).
        loss_cls: a ``LOSSES`` config (default sigmoid ``CrossEntropyLoss``).
        loss_bbox: a ``LOSSES`` config (default ``L1Loss``; ``SmoothL1Loss``
            works too).
        test_cfg: ``nms_pre`` (anchors kept per level before NMS, the best
            objectness logits), ``iou_thr``, ``max_per_img``,
            ``min_bbox_size`` (boxes whose width or height is not above it
            are dropped), ``min_score`` (then boxes whose objectness is below
            it; torchvision's ``rpn_score_thresh``, default 0: none).
        ignore_padding: anchors whose cell covers only batch padding take no
            part in training (default); False assigns them like every other
            anchor, as torchvision's RPN does.

    With the anchor generator's ``stride_from_input``, anchors are laid out
    from the padded batch shape (``metainfo['batch_input_shape']``).
    """

    owner = "RPNHead"
    anchor_generator_arg = "anchor_generator"
    default_anchor_generator = DEFAULT_ANCHOR_GENERATOR
    default_assigner = DEFAULT_ASSIGNER
    default_sampler = DEFAULT_SAMPLER
    default_loss_cls = DEFAULT_LOSS_CLS
    default_loss_bbox = DEFAULT_LOSS_BBOX
    default_test_cfg = DEFAULT_TEST_CFG

    def __init__(self, in_channels: int | Sequence[int] | None = None,
                 strides: Sequence[int] | None = None,
                 feat_channels: int = 256, anchor_generator: dict | None = None,
                 assigner: dict | None = None, sampler: dict | None = None,
                 bbox_coder: dict | None = None, loss_cls: dict | None = None,
                 loss_bbox: dict | None = None, test_cfg: dict | None = None,
                 ignore_padding: bool = True,
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        owner = self.owner
        in_channels, strides = resolve_input_shape(owner, input_shape, in_channels, strides)
        if strides is None:
            raise ValueError(f"{owner}: give 'strides' or 'input_shape'")
        self.ignore_padding = bool(ignore_padding)
        self.in_channels = uniform_channels(in_channels, owner)
        self.feat_channels = feat_channels
        self.strides = tuple(strides)
        self.prior_generator = with_defaults(anchor_generator, self.default_anchor_generator,
                                             AnchorGenerator,
                                             f"{owner}.{self.anchor_generator_arg}",
                                             strides=self.strides)
        self.assigner = with_defaults(assigner, self.default_assigner, MaxIoUAssigner,
                                      f"{owner}.assigner")
        self.sampler = with_defaults(sampler, self.default_sampler, RandomSampler,
                                     f"{owner}.sampler")
        self.bbox_coder = with_defaults(bbox_coder, {}, DeltaXYWHBBoxCoder, f"{owner}.bbox_coder")
        self.loss_cls = loss_with_defaults(loss_cls, self.default_loss_cls)
        self.loss_bbox = loss_with_defaults(loss_bbox, self.default_loss_bbox)
        if not getattr(self.loss_cls, "use_sigmoid", False):
            raise ValueError(f"{owner}: 'loss_cls' must be a sigmoid loss (one objectness logit "
                             "per anchor), e.g. dict(type='CrossEntropyLoss', use_sigmoid=True)")
        self.reg_decoded_bbox = bool(getattr(self.loss_bbox, "expects_boxes", False))
        self.test_cfg = merge_cfg(owner, self.default_test_cfg, test_cfg, "test_cfg")
        self._build_layers()
        self._default_init()

    def _build_layers(self) -> None:
        if self.prior_generator.num_levels != len(self.strides):
            raise ValueError(f"RPNHead: anchor_generator has {self.prior_generator.num_levels} "
                             f"levels but 'strides' has {len(self.strides)}")
        self.num_base_priors = self.prior_generator.num_base_anchors
        self.rpn_conv = nn.Conv2d(self.in_channels, self.feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(self.feat_channels, self.num_base_priors, 1)
        self.rpn_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * 4, 1)

    def _default_init(self) -> None:
        for module in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            self._default_init()

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: objectness logits [B, A, H, W] and deltas [B, A * 4, H, W]."""
        if len(feats) != len(self.strides):
            raise ValueError(f"RPNHead: got {len(feats)} feature maps for "
                             f"{len(self.strides)} strides {self.strides}")
        cls_scores, bbox_preds = [], []
        for feat in feats:
            x = torch.relu(self.rpn_conv(feat))
            cls_scores.append(self.rpn_cls(x))
            bbox_preds.append(self.rpn_reg(x))
        return cls_scores, bbox_preds

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], data_samples) -> dict[str, Tensor]:
        return self.loss_by_feat(*self(feats), data_samples)

    def _check_batch(self, cls_scores, data_samples) -> None:
        if len(data_samples) != cls_scores[0].shape[0]:
            raise ValueError(f"{self.owner}.loss: {len(data_samples)} data samples for a batch "
                             f"of {cls_scores[0].shape[0]} images")

    def loss_by_feat(self, cls_scores, bbox_preds, data_samples) -> dict[str, Tensor]:
        self._check_batch(cls_scores, data_samples)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        anchors = torch.cat(self._grid_anchors(featmap_sizes, device,
                                               [s.metainfo for s in data_samples]))
        inside = torch.stack([self._inside(featmap_sizes, s, device) for s in data_samples])
        return self.sampled_losses(flatten_levels(cls_scores, 1)[..., 0],
                                   flatten_levels(bbox_preds, 4), anchors, inside, data_samples)

    def sampled_losses(self, flat_cls: Tensor, flat_reg: Tensor, anchors: Tensor,
                       inside: Tensor, data_samples) -> dict[str, Tensor]:
        """``loss_rpn_cls`` / ``loss_rpn_bbox`` of objectness logits [B, N] and
        deltas [B, N, 4] on ``anchors`` ([N, 4] or [B, N, 4] per image) of
        which ``inside`` [B, N] take part: per image assign, sample, then both
        losses averaged over the sampled anchors."""
        logits, labels, deltas, targets = [], [], [], []
        for i, sample in enumerate(data_samples):
            priors = anchors if anchors.dim() == 2 else anchors[i]
            pos, neg, matched = self.sample_anchors(priors, inside[i], sample)
            logits.append(flat_cls[i, torch.cat([pos, neg])])
            labels.append(torch.cat([pos.new_zeros(pos.numel()), neg.new_ones(neg.numel())]))
            pred, target = regression_pair(self.bbox_coder, self.reg_decoded_bbox, priors[pos],
                                           flat_reg[i, pos], matched)
            deltas.append(pred)
            targets.append(target)
        logits, labels = torch.cat(logits), torch.cat(labels)
        num_samples = max(float(labels.numel()), 1.0)
        # one sigmoid "class": label 0 = object, 1 (= num_classes) = background
        loss_cls = self.loss_cls(logits[:, None], labels, avg_factor=num_samples)
        loss_bbox = regression_loss(self.loss_bbox, torch.cat(deltas), torch.cat(targets),
                                    num_samples, flat_reg)
        return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=loss_bbox)

    def sample_anchors(self, priors: Tensor, inside: Tensor, sample
                       ) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled positive and negative indices of one image's ``priors``
        [N, 4] (those ``inside`` take part) and the gt box of each positive."""
        gt_boxes, _, ignored = ground_truth(sample, priors.device, CLASS_AGNOSTIC, self.owner)
        gt_inds = assign_inside(self.assigner, priors, inside, gt_boxes, None, ignored)
        pos, neg = self.sampler.sample(gt_inds)
        return pos, neg, gt_boxes[gt_inds[pos] - 1]

    def _inside(self, featmap_sizes, sample, device) -> Tensor:
        return inside_flags(self.prior_generator, featmap_sizes, sample.metainfo.get("img_shape"),
                            device, self.ignore_padding)

    def _sample_anchors(self, anchors: Tensor, featmap_sizes, sample):
        """:meth:`sample_anchors` on the anchors of cells inside the image."""
        return self.sample_anchors(anchors, self._inside(featmap_sizes, sample, anchors.device),
                                   sample)

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None) -> list[InstanceData]:
        """Proposals per image (``bboxes``, ``scores``, ``labels`` = 0) in
        ``img_shape`` coordinates."""
        outputs = self(feats)
        return self.predict_by_feat(*outputs, sample_metas(data_samples, feats[0].shape[0]))

    def loss_and_predict(self, feats: Sequence[Tensor], data_samples,
                         proposal_cfg: dict | None = None
                         ) -> tuple[dict[str, Tensor], list[InstanceData]]:
        """Losses and detached proposals (``img_shape`` coordinates) from one
        forward pass; ``proposal_cfg`` overrides keys of ``test_cfg``."""
        outputs = self(feats)
        losses = self.loss_by_feat(*outputs, data_samples)
        cfg = merge_cfg(self.owner, self.test_cfg, proposal_cfg, "proposal_cfg")
        metas = sample_metas(data_samples, feats[0].shape[0])
        with torch.no_grad():
            proposals = self.predict_by_feat(*[[t.detach() for t in o] for o in outputs],
                                             metas, cfg=cfg)
        return losses, proposals

    def _grid_anchors(self, featmap_sizes, device, metas: Sequence[dict]) -> list[Tensor]:
        """Anchors per level; the padded batch shape goes along for the
        generator's ``stride_from_input``."""
        input_size = metas[0].get("batch_input_shape") if metas else None
        return self.prior_generator.grid_anchors(featmap_sizes, device, input_size=input_size)

    def predict_by_feat(self, cls_scores, bbox_preds, batch_img_metas: Sequence[dict],
                        cfg: dict | None = None) -> list[InstanceData]:
        """Proposals (``bboxes``, ``scores``, ``labels`` = 0) in ``img_shape``
        coordinates; ``cfg`` defaults to ``test_cfg``."""
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        anchors = self._grid_anchors(featmap_sizes, cls_scores[0].device, batch_img_metas)
        return self.propose_levels(cls_scores, bbox_preds, batch_img_metas, anchors,
                                   cfg or self.test_cfg)

    def propose_levels(self, cls_scores, bbox_preds, batch_img_metas: Sequence[dict],
                       priors: Sequence[Tensor], cfg: dict,
                       keeps: Sequence[Tensor] | None = None) -> list[InstanceData]:
        """Per image, :func:`select_proposals` of each level's logits and
        deltas on ``priors`` (per level [n, 4], or [B, n, 4] per image), only
        where ``keeps`` (per level bool [B, n]) when given."""
        results = []
        for i, meta in enumerate(batch_img_metas):
            level_logits, level_deltas, level_priors = [], [], []
            for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
                logit = cls[i].permute(1, 2, 0).reshape(-1)
                delta = reg[i].permute(1, 2, 0).reshape(-1, 4)
                prior = priors[level] if priors[level].dim() == 2 else priors[level][i]
                if keeps is not None:
                    keep = keeps[level][i]
                    logit, delta, prior = logit[keep], delta[keep], prior[keep]
                level_logits.append(logit)
                level_deltas.append(delta)
                level_priors.append(prior)
            results.append(select_proposals(level_logits, level_deltas, level_priors,
                                            self.bbox_coder, cfg, meta.get("img_shape"),
                                            sort_all=keeps is None))
        return results
