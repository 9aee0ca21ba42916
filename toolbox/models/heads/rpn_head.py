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
* ``predict(feats, data_samples, rescale=True) -> list[InstanceData]`` with
  ``bboxes``, ``scores`` and ``labels`` (all 0), so that a
  ``SingleStageDetector`` with this head is an RPN-only proposal model;
* ``loss_and_predict(feats, data_samples, proposal_cfg=None) -> (losses,
  proposals)``: detached proposals (``bboxes``, ``scores``) in ``img_shape``
  coordinates; ``proposal_cfg`` overrides keys of ``test_cfg``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads._common import (build_loss, build_part, finish_proposals, flatten_levels,
                                          ground_truth, merge_cfg, sample_metas)
from toolbox.structures import AnchorGenerator, DeltaXYWHBBoxCoder, MaxIoUAssigner
from toolbox.structures.nms import proposal_nms
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

    Args:
        in_channels: channels of every input level (one int; a tuple of equal
            widths is accepted).
        strides: stride of each input level (fills the anchor generator's).
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

    def __init__(self, in_channels: int | Sequence[int], strides: Sequence[int],
                 feat_channels: int = 256, anchor_generator: dict | None = None,
                 assigner: dict | None = None, sampler: dict | None = None,
                 bbox_coder: dict | None = None, loss_cls: dict | None = None,
                 loss_bbox: dict | None = None, test_cfg: dict | None = None,
                 ignore_padding: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.ignore_padding = bool(ignore_padding)
        if not isinstance(in_channels, int):
            widths = set(in_channels)
            if len(widths) != 1:
                raise ValueError("RPNHead: 'in_channels' must be one int (its convs are shared "
                                 f"by all levels), got widths {tuple(in_channels)}")
            in_channels = widths.pop()
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.strides = tuple(strides)
        self.prior_generator = build_part(anchor_generator or DEFAULT_ANCHOR_GENERATOR,
                                          AnchorGenerator, "RPNHead.anchor_generator",
                                          strides=self.strides)
        if self.prior_generator.num_levels != len(self.strides):
            raise ValueError(f"RPNHead: anchor_generator has {self.prior_generator.num_levels} "
                             f"levels but 'strides' has {len(self.strides)}")
        self.assigner = build_part({**DEFAULT_ASSIGNER, **(assigner or {})}, MaxIoUAssigner,
                                   "RPNHead.assigner")
        self.sampler = build_part({**DEFAULT_SAMPLER, **(sampler or {})}, RandomSampler,
                                  "RPNHead.sampler")
        self.bbox_coder = build_part(bbox_coder or {}, DeltaXYWHBBoxCoder, "RPNHead.bbox_coder")
        self.loss_cls = build_loss(loss_cls or DEFAULT_LOSS_CLS)
        self.loss_bbox = build_loss(loss_bbox or DEFAULT_LOSS_BBOX)
        if not getattr(self.loss_cls, "use_sigmoid", False):
            raise ValueError("RPNHead: 'loss_cls' must be a sigmoid loss (one objectness logit "
                             "per anchor), e.g. dict(type='CrossEntropyLoss', use_sigmoid=True)")
        self.test_cfg = merge_cfg("RPNHead", DEFAULT_TEST_CFG, test_cfg, "test_cfg")

        self.num_base_priors = self.prior_generator.num_base_anchors
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, self.num_base_priors, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, self.num_base_priors * 4, 1)
        self._default_init()

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
        cls_scores, bbox_preds = self(feats)
        return self.loss_by_feat(cls_scores, bbox_preds, data_samples)

    def loss_by_feat(self, cls_scores, bbox_preds, data_samples) -> dict[str, Tensor]:
        if len(data_samples) != cls_scores[0].shape[0]:
            raise ValueError(f"RPNHead.loss: {len(data_samples)} data samples for a batch "
                             f"of {cls_scores[0].shape[0]} images")
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        anchors = torch.cat(self._grid_anchors(featmap_sizes, device,
                                               [s.metainfo for s in data_samples]))
        flat_cls = flatten_levels(cls_scores, 1)[..., 0]
        flat_reg = flatten_levels(bbox_preds, 4)
        logits, labels, deltas, targets = [], [], [], []
        for i, sample in enumerate(data_samples):
            pos, neg, matched = self._sample_anchors(anchors, featmap_sizes, sample)
            chosen = torch.cat([pos, neg])
            logits.append(flat_cls[i, chosen])
            labels.append(torch.cat([pos.new_zeros(pos.numel()), neg.new_ones(neg.numel())]))
            deltas.append(flat_reg[i, pos])
            targets.append(self.bbox_coder.encode(anchors[pos], matched))
        logits, labels = torch.cat(logits), torch.cat(labels)
        num_samples = max(float(labels.numel()), 1.0)
        # one sigmoid "class": label 0 = object, 1 (= num_classes) = background
        loss_cls = self.loss_cls(logits[:, None], labels, avg_factor=num_samples)
        deltas, targets = torch.cat(deltas), torch.cat(targets)
        if deltas.numel():
            loss_bbox = self.loss_bbox(deltas, targets, avg_factor=num_samples)
        else:  # keep the regression branch in the graph (DDP needs every parameter)
            loss_bbox = flat_reg.sum() * 0.0
        return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=loss_bbox)

    def _sample_anchors(self, anchors: Tensor, featmap_sizes, sample
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled positive and negative anchor indices of one image and the
        ground-truth box of each positive."""
        num = anchors.shape[0]
        img_shape = sample.metainfo.get("img_shape")
        if img_shape is not None and self.ignore_padding:
            inside = torch.cat(self.prior_generator.valid_flags(featmap_sizes, img_shape,
                                                                anchors.device))
        else:
            inside = torch.ones(num, dtype=torch.bool, device=anchors.device)
        # class-agnostic: any label below 2**31 is an "object"
        gt_boxes, _, ignored = ground_truth(sample, anchors.device, 2 ** 31 - 1, "RPNHead")
        result = self.assigner.assign(anchors[inside], gt_boxes, None, ignored)
        gt_inds = anchors.new_full((num,), -1, dtype=torch.long)
        gt_inds[inside] = result.gt_inds
        pos, neg = self.sampler.sample(gt_inds)
        return pos, neg, gt_boxes[gt_inds[pos] - 1]

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None,
                rescale: bool = True) -> list[InstanceData]:
        """Proposals per image (``bboxes``, ``scores``, ``labels`` = 0); with
        ``rescale`` in original-image coordinates, else in ``img_shape``."""
        cls_scores, bbox_preds = self(feats)
        metas = sample_metas(data_samples, cls_scores[0].shape[0])
        proposals = self.predict_by_feat(cls_scores, bbox_preds, metas, self.test_cfg)
        return finish_proposals(proposals, metas, rescale)

    def loss_and_predict(self, feats: Sequence[Tensor], data_samples,
                         proposal_cfg: dict | None = None
                         ) -> tuple[dict[str, Tensor], list[InstanceData]]:
        """Losses and detached proposals (``img_shape`` coordinates) from one
        forward pass; ``proposal_cfg`` overrides keys of ``test_cfg``."""
        cls_scores, bbox_preds = self(feats)
        losses = self.loss_by_feat(cls_scores, bbox_preds, data_samples)
        cfg = merge_cfg("RPNHead", self.test_cfg, proposal_cfg, "proposal_cfg")
        metas = sample_metas(data_samples, cls_scores[0].shape[0])
        with torch.no_grad():
            proposals = self.predict_by_feat([c.detach() for c in cls_scores],
                                             [b.detach() for b in bbox_preds], metas, cfg)
        return losses, proposals

    def _grid_anchors(self, featmap_sizes, device, metas: Sequence[dict]) -> list[Tensor]:
        """Anchors per level; the padded batch shape goes along for the
        generator's ``stride_from_input``."""
        input_size = metas[0].get("batch_input_shape") if metas else None
        return self.prior_generator.grid_anchors(featmap_sizes, device, input_size=input_size)

    def predict_by_feat(self, cls_scores, bbox_preds, batch_img_metas: Sequence[dict],
                        cfg: dict) -> list[InstanceData]:
        """Proposals (``bboxes``, ``scores``) in ``img_shape`` coordinates."""
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        anchors = self._grid_anchors(featmap_sizes, cls_scores[0].device, batch_img_metas)
        results = []
        for i, meta in enumerate(batch_img_metas):
            img_shape = meta.get("img_shape")
            boxes, scores = [], []
            for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
                logit = cls[i].permute(1, 2, 0).reshape(-1)
                delta = reg[i].permute(1, 2, 0).reshape(-1, 4)
                if cfg["nms_pre"] > 0:  # the best logits (no ties made by the sigmoid)
                    logit, keep = logit.topk(min(int(cfg["nms_pre"]), logit.numel()))
                    delta, prior = delta[keep], anchors[level][keep]
                else:
                    prior = anchors[level]
                boxes.append(self.bbox_coder.decode(prior, delta, max_shape=img_shape))
                scores.append(logit.sigmoid())
            kept_boxes, kept_scores = proposal_nms(boxes, scores, cfg["min_bbox_size"],
                                                   cfg["iou_thr"], cfg["max_per_img"],
                                                   cfg["min_score"])
            results.append(InstanceData(bboxes=kept_boxes, scores=kept_scores))
        return results
