"""RetinaNet's dense head (Lin et al., "Focal Loss for Dense Object Detection").

Two small conv towers shared by every pyramid level: one predicts
``A * C`` class logits per cell, the other ``A * 4`` box deltas, for the
``A`` anchors of each cell. Training assigns anchors to ground truth by IoU,
then applies the classification loss to every non-ignored anchor and the
box loss to the positives, both divided by the number of positives.

Classification-loss contract (so that any registered loss, e.g. EQLv2, can
replace ``FocalLoss`` from the config): the head calls
``loss_cls(logits [M, C'], labels [M], avg_factor=num_pos)`` on the M
anchors that count (ignored anchors are removed first), where ``labels``
are long class indices and ``num_classes`` means background. ``C' =
num_classes`` for sigmoid losses; a loss whose ``use_sigmoid`` attribute is
False gets ``num_classes + 1`` logits (the last one background) and the
head scores with a softmax. A box loss with ``expects_boxes = True``
(GIoULoss) receives decoded boxes; others receive encoded deltas.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads._common import (boxes_to_original, build_loss, build_part,
                                          flatten_levels, ground_truth, sample_metas)
from toolbox.structures import (AnchorGenerator, DeltaXYWHBBoxCoder, MaxIoUAssigner,
                                batched_nms_postprocess, filter_scores_and_topk)

__all__ = ["RetinaHead"]

DEFAULT_ANCHOR_GENERATOR = dict(octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0, ignore_iof_thr=0.5)
DEFAULT_LOSS_CLS = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="L1Loss", loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=100)


class RetinaHead(BaseModule):
    """RetinaNet head.

    Args:
        num_classes: number of object classes (no background entry).
        in_channels: channels of every input level (the neck's width).
        feat_channels: width of the two conv towers.
        stacked_convs: 3x3 conv layers per tower.
        strides: stride of each input level (fills the anchor generator's).
        anchor_generator: :class:`AnchorGenerator` arguments (default
            ``octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1, 2)``).
        assigner: :class:`MaxIoUAssigner` arguments (default pos 0.5, neg 0.4,
            low-quality matches, ``ignore_iof_thr=0.5`` so anchors inside
            ``ignored_instances`` boxes are ignored).
        bbox_coder: :class:`DeltaXYWHBBoxCoder` arguments.
        loss_cls: a ``LOSSES`` config (default FocalLoss gamma 2, alpha 0.25).
        loss_bbox: a ``LOSSES`` config (default L1Loss; GIoULoss works too).
        norm_cfg: norm layer of the towers, e.g. ``dict(type='GN',
            num_groups=32)``; None for plain conv + ReLU.
        test_cfg: ``nms_pre`` (candidates per level), ``score_thr``,
            ``iou_thr`` and ``max_per_img``.
        prior_prob: initial foreground probability (classifier bias).
        loss_normalizer: ``'batch'`` divides each loss summed over the batch
            by the batch's number of positives; ``'image'`` divides each
            image's sum by ``max(1, its positives)`` and averages over the
            images (torchvision's RetinaNet).
        skip_padding_anchors: anchors whose cell lies only in the batch
            padding take no part in training (False: every anchor counts,
            as in torchvision).

    Anchors come from ``prior_generator.grid_anchors(..., input_size=
    batch_input_shape)``, so an anchor generator with ``stride_from_input``
    (torchvision's stride rule) sees the padded batch size.
    """

    def __init__(self, num_classes: int, in_channels: int | Sequence[int],
                 feat_channels: int = 256, stacked_convs: int = 4,
                 strides: Sequence[int] = (8, 16, 32, 64, 128),
                 anchor_generator: dict | None = None, assigner: dict | None = None,
                 bbox_coder: dict | None = None, loss_cls: dict | None = None,
                 loss_bbox: dict | None = None, norm_cfg: dict | None = None,
                 test_cfg: dict | None = None, prior_prob: float = 0.01,
                 loss_normalizer: str = "batch", skip_padding_anchors: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"RetinaHead: 'num_classes' must be a positive int, got {num_classes!r}")
        if not isinstance(in_channels, int):
            widths = set(in_channels)
            if len(widths) != 1:
                raise ValueError("RetinaHead: 'in_channels' must be one int (its conv towers are "
                                 f"shared by all levels), got different widths {tuple(in_channels)}; "
                                 "put a neck such as FPN in front of the head")
            in_channels = widths.pop()
        if not 0 < prior_prob < 1:
            raise ValueError(f"RetinaHead: 'prior_prob' must be in (0, 1), got {prior_prob}")
        if loss_normalizer not in ("batch", "image"):
            raise ValueError("RetinaHead: 'loss_normalizer' must be 'batch' or 'image', "
                             f"got {loss_normalizer!r}")
        self.loss_normalizer = loss_normalizer
        self.skip_padding_anchors = bool(skip_padding_anchors)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = tuple(strides)
        self.prior_prob = prior_prob

        self.prior_generator = build_part(anchor_generator or DEFAULT_ANCHOR_GENERATOR,
                                          AnchorGenerator, "RetinaHead.anchor_generator",
                                          strides=self.strides)
        if self.prior_generator.num_levels != len(self.strides):
            raise ValueError(f"RetinaHead: anchor_generator has {self.prior_generator.num_levels} "
                             f"levels but 'strides' has {len(self.strides)}")
        self.assigner = build_part(assigner or DEFAULT_ASSIGNER, MaxIoUAssigner,
                                   "RetinaHead.assigner")
        self.bbox_coder = build_part(bbox_coder or {}, DeltaXYWHBBoxCoder, "RetinaHead.bbox_coder")
        self.loss_cls = build_loss(loss_cls or DEFAULT_LOSS_CLS)
        self.loss_bbox = build_loss(loss_bbox or DEFAULT_LOSS_BBOX)
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, "use_sigmoid", True))
        self.reg_decoded_bbox = bool(getattr(self.loss_bbox, "expects_boxes", False))
        self.cls_out_channels = num_classes if self.use_sigmoid_cls else num_classes + 1

        unknown = set(test_cfg or {}) - set(DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(f"RetinaHead: unknown test_cfg key(s) {sorted(unknown)}; "
                             f"accepted: {sorted(DEFAULT_TEST_CFG)}")
        self.test_cfg = {**DEFAULT_TEST_CFG, **(test_cfg or {})}

        num_anchors = self.prior_generator.num_base_anchors
        self.num_base_priors = num_anchors
        self.cls_convs = self._tower(norm_cfg)
        self.reg_convs = self._tower(norm_cfg)
        last = feat_channels if stacked_convs > 0 else in_channels
        self.retina_cls = nn.Conv2d(last, num_anchors * self.cls_out_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(last, num_anchors * 4, 3, padding=1)
        self._default_init()

    def _tower(self, norm_cfg) -> nn.Sequential:
        layers = [ConvModule(self.in_channels if i == 0 else self.feat_channels,
                             self.feat_channels, 3, padding=1, norm_cfg=norm_cfg)
                  for i in range(self.stacked_convs)]
        return nn.Sequential(*layers)

    def _default_init(self) -> None:
        """Normal(0, 0.01) convs; classifier bias so that p(fg) = prior_prob."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.use_sigmoid_cls:
            nn.init.constant_(self.retina_cls.bias, -math.log((1 - self.prior_prob) / self.prior_prob))

    def init_weights(self) -> None:
        super().init_weights()  # an explicit init_cfg (or ConvModule's own init) first
        if self.init_cfg is None:
            self._default_init()

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: class logits [B, A * C', H, W] and deltas [B, A * 4, H, W]."""
        if len(feats) != len(self.strides):
            raise ValueError(f"RetinaHead: got {len(feats)} feature maps for "
                             f"{len(self.strides)} strides {self.strides}")
        cls_scores, bbox_preds = [], []
        for feat in feats:
            cls_scores.append(self.retina_cls(self.cls_convs(feat)))
            bbox_preds.append(self.retina_reg(self.reg_convs(feat)))
        return cls_scores, bbox_preds

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], data_samples) -> dict[str, Tensor]:
        cls_scores, bbox_preds = self(feats)
        return self.loss_by_feat(cls_scores, bbox_preds, data_samples)

    def loss_by_feat(self, cls_scores: list[Tensor], bbox_preds: list[Tensor],
                     data_samples) -> dict[str, Tensor]:
        if len(data_samples) != cls_scores[0].shape[0]:
            raise ValueError(f"RetinaHead.loss: {len(data_samples)} data samples for a batch "
                             f"of {cls_scores[0].shape[0]} images")
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        anchors = torch.cat(self._anchors(featmap_sizes, cls_scores[0].device,
                                          sample_metas(data_samples, len(data_samples))))
        labels, counted, targets, pos = self.get_targets(anchors, featmap_sizes, data_samples)
        flat_cls = flatten_levels(cls_scores, self.cls_out_channels)
        flat_reg = flatten_levels(bbox_preds, 4)
        if self.loss_normalizer == "image":
            parts = [self._losses(flat_cls[i], flat_reg[i], anchors, labels[i], counted[i],
                                  targets[i], pos[i]) for i in range(len(data_samples))]
            loss_cls, loss_bbox = (sum(values) / len(parts) for values in zip(*parts))
        else:
            loss_cls, loss_bbox = self._losses(flat_cls, flat_reg, anchors, labels, counted,
                                               targets, pos)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)

    def _losses(self, flat_cls: Tensor, flat_reg: Tensor, anchors: Tensor, labels: Tensor,
                counted: Tensor, targets: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """(classification, box) loss over the anchors of one image ([N, ...]
        inputs) or of the batch ([B, N, ...]), divided by max(1, positives)."""
        num_pos = max(float(pos.sum()), 1.0)
        loss_cls = self.loss_cls(flat_cls[counted], labels[counted], avg_factor=num_pos)
        if pos.any():
            pred = flat_reg[pos]
            if self.reg_decoded_bbox:
                pred = self.bbox_coder.decode(anchors.expand(*pos.shape, 4)[pos], pred)
            loss_bbox = self.loss_bbox(pred, targets[pos], avg_factor=num_pos)
        else:  # keep the regression branch in the graph (DDP needs every parameter)
            loss_bbox = flat_reg.sum() * 0.0
        return loss_cls, loss_bbox

    def _anchors(self, featmap_sizes, device, metas: Sequence[dict]) -> list[Tensor]:
        """Anchors of every level for the batch's padded input size."""
        input_size = metas[0].get("batch_input_shape") if metas else None
        return self.prior_generator.grid_anchors(featmap_sizes, device, input_size=input_size)

    def get_targets(self, anchors: Tensor, featmap_sizes, data_samples
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Training targets of a batch, each [B, N, ...] in anchor order.

        Returns ``labels`` (long, ``num_classes`` = background), ``counted``
        (bool: positive or negative, i.e. not ignored and inside the image),
        ``bbox_targets`` ([B, N, 4] deltas, or boxes for ``expects_boxes``
        losses; meaningful at positives) and ``pos`` (bool).
        """
        num = anchors.shape[0]
        batch = len(data_samples)
        labels = anchors.new_full((batch, num), self.num_classes, dtype=torch.long)
        counted = anchors.new_zeros((batch, num), dtype=torch.bool)
        bbox_targets = anchors.new_zeros((batch, num, 4))
        pos = anchors.new_zeros((batch, num), dtype=torch.bool)
        for i, sample in enumerate(data_samples):
            img_shape = sample.metainfo.get("img_shape")
            if img_shape is not None and self.skip_padding_anchors:
                inside = torch.cat(self.prior_generator.valid_flags(
                    featmap_sizes, img_shape, anchors.device))
            else:
                inside = torch.ones(num, dtype=torch.bool, device=anchors.device)
            gt_boxes, gt_labels, ignored = ground_truth(sample, anchors.device, self.num_classes, "RetinaHead")
            result = self.assigner.assign(anchors[inside], gt_boxes, gt_labels, ignored)
            gt_inds = anchors.new_full((num,), -1, dtype=torch.long)
            gt_inds[inside] = result.gt_inds
            pos_i = gt_inds > 0
            counted[i] = gt_inds >= 0
            pos[i] = pos_i
            matched = gt_boxes[gt_inds[pos_i] - 1]
            labels[i, pos_i] = gt_labels[gt_inds[pos_i] - 1]
            bbox_targets[i, pos_i] = (matched if self.reg_decoded_bbox
                                      else self.bbox_coder.encode(anchors[pos_i], matched))
        return labels, counted, bbox_targets, pos

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None,
                rescale: bool = True) -> list[InstanceData]:
        """Detections per image; with ``rescale`` in original-image coordinates
        (flip undone, divided by ``scale_factor``, clipped to ``ori_shape``),
        else in ``img_shape`` coordinates."""
        cls_scores, bbox_preds = self(feats)
        batch = cls_scores[0].shape[0]
        metas = sample_metas(data_samples, batch)
        return self.predict_by_feat(cls_scores, bbox_preds, metas, rescale)

    def predict_by_feat(self, cls_scores: list[Tensor], bbox_preds: list[Tensor],
                        batch_img_metas: Sequence[dict], rescale: bool = True
                        ) -> list[InstanceData]:
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        anchors = self._anchors(featmap_sizes, cls_scores[0].device, batch_img_metas)
        cfg = self.test_cfg
        results = []
        for i, meta in enumerate(batch_img_metas):
            img_shape = meta.get("img_shape")
            all_boxes, all_scores, all_labels = [], [], []
            for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
                logits = cls[i].permute(1, 2, 0).reshape(-1, self.cls_out_channels)
                scores = logits.sigmoid() if self.use_sigmoid_cls else logits.softmax(-1)[:, :-1]
                deltas = reg[i].permute(1, 2, 0).reshape(-1, 4)
                scores, labels, keep = filter_scores_and_topk(scores, cfg["score_thr"],
                                                              cfg["nms_pre"])
                all_boxes.append(self.bbox_coder.decode(anchors[level][keep], deltas[keep],
                                                        max_shape=img_shape))
                all_scores.append(scores)
                all_labels.append(labels)
            boxes, scores, labels = batched_nms_postprocess(
                torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels),
                cfg["iou_thr"], cfg["max_per_img"])
            if rescale:
                boxes = boxes_to_original(boxes, meta)
            results.append(InstanceData(bboxes=boxes, scores=scores, labels=labels))
        return results
