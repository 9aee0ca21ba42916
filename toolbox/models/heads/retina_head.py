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

from toolbox.models.heads.dense import (anchor_labels, assign_inside, decode_detections,
                                        graph_zero, inside_flags)
from toolbox.models.heads.parts import (flatten_levels, ground_truth, loss_with_defaults,
                                        merge_cfg, resolve_input_shape, sample_metas,
                                        uniform_channels, with_defaults)
from toolbox.structures import AnchorGenerator, DeltaXYWHBBoxCoder, MaxIoUAssigner
from toolbox.structures.feature_spec import FeatureSpec

__all__ = ["RetinaHead"]

DEFAULT_ANCHOR_GENERATOR = dict(octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0, ignore_iof_thr=0.5)
DEFAULT_LOSS_CLS = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="L1Loss", loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=100)
DEFAULT_STRIDES = (8, 16, 32, 64, 128)


class RetinaHead(BaseModule):
    """RetinaNet head.

    Every sub-config (``anchor_generator``, ``assigner``, ``bbox_coder``,
    ``loss_cls``, ``loss_bbox``, ``test_cfg``) merges over the default named
    below; a loss of another ``type`` replaces it (docs/heads.md).

    Args:
        num_classes: number of object classes (no background entry).
        in_channels: channels of every input level (the neck's width);
            from ``input_shape`` when absent.
        feat_channels: width of the two conv towers.
        stacked_convs: 3x3 conv layers per tower.
        strides: stride of each input level (fills the anchor generator's);
            from ``input_shape`` when absent, else (8, 16, 32, 64, 128).
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
        input_shape: the input levels' :class:`FeatureSpec` (a neck's
            ``output_shape()``); must agree with ``in_channels`` / ``strides``
            when those are given too.

    Anchors come from ``prior_generator.grid_anchors(..., input_size=
    batch_input_shape)``, so an anchor generator with ``stride_from_input``
    (torchvision's stride rule) sees the padded batch size. Predictions are
    in the network input's (``img_shape``) coordinates.
    """

    owner = "RetinaHead"
    anchor_generator_arg = "anchor_generator"
    default_anchor_generator = DEFAULT_ANCHOR_GENERATOR
    default_assigner = DEFAULT_ASSIGNER
    default_loss_cls = DEFAULT_LOSS_CLS
    default_loss_bbox = DEFAULT_LOSS_BBOX
    default_test_cfg = DEFAULT_TEST_CFG

    def __init__(self, num_classes: int, in_channels: int | Sequence[int] | None = None,
                 feat_channels: int = 256, stacked_convs: int = 4,
                 strides: Sequence[int] | None = None,
                 anchor_generator: dict | None = None, assigner: dict | None = None,
                 bbox_coder: dict | None = None, loss_cls: dict | None = None,
                 loss_bbox: dict | None = None, norm_cfg: dict | None = None,
                 test_cfg: dict | None = None, prior_prob: float = 0.01,
                 loss_normalizer: str = "batch", skip_padding_anchors: bool = True,
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        owner = self.owner
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"{owner}: 'num_classes' must be a positive int, got {num_classes!r}")
        in_channels, strides = resolve_input_shape(owner, input_shape, in_channels, strides)
        if not 0 < prior_prob < 1:
            raise ValueError(f"{owner}: 'prior_prob' must be in (0, 1), got {prior_prob}")
        if loss_normalizer not in ("batch", "image"):
            raise ValueError(f"{owner}: 'loss_normalizer' must be 'batch' or 'image', "
                             f"got {loss_normalizer!r}")
        self.loss_normalizer = loss_normalizer
        self.skip_padding_anchors = bool(skip_padding_anchors)
        self.num_classes = num_classes
        self.in_channels = uniform_channels(in_channels, owner)
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = tuple(DEFAULT_STRIDES if strides is None else strides)
        self.prior_prob = prior_prob
        self._build_parts(anchor_generator, assigner, bbox_coder, loss_cls, loss_bbox, test_cfg)
        self._build_layers(norm_cfg)
        self._default_init()

    def _build_parts(self, anchor_generator, assigner, bbox_coder, loss_cls, loss_bbox,
                     test_cfg) -> None:
        owner = self.owner
        self.prior_generator = with_defaults(anchor_generator, self.default_anchor_generator,
                                             AnchorGenerator, f"{owner}.{self.anchor_generator_arg}",
                                             strides=self.strides)
        self.assigner = with_defaults(assigner, self.default_assigner, MaxIoUAssigner,
                                      f"{owner}.assigner")
        self.bbox_coder = with_defaults(bbox_coder, {}, DeltaXYWHBBoxCoder, f"{owner}.bbox_coder")
        self.loss_cls = loss_with_defaults(loss_cls, self.default_loss_cls)
        self.loss_bbox = loss_with_defaults(loss_bbox, self.default_loss_bbox)
        self.use_sigmoid_cls = bool(getattr(self.loss_cls, "use_sigmoid", True))
        self.reg_decoded_bbox = bool(getattr(self.loss_bbox, "expects_boxes", False))
        self.cls_out_channels = (self.num_classes if self.use_sigmoid_cls
                                 else self.num_classes + 1)
        self.test_cfg = merge_cfg(owner, self.default_test_cfg, test_cfg, "test_cfg")

    def _build_layers(self, norm_cfg) -> None:
        if self.prior_generator.num_levels != len(self.strides):
            raise ValueError(f"{self.owner}: anchor_generator has "
                             f"{self.prior_generator.num_levels} levels but 'strides' has "
                             f"{len(self.strides)}")
        num_anchors = self.num_base_priors = self.prior_generator.num_base_anchors
        self.cls_convs = self._tower(norm_cfg)
        self.reg_convs = self._tower(norm_cfg)
        last = self.feat_channels if self.stacked_convs > 0 else self.in_channels
        self.retina_cls = nn.Conv2d(last, num_anchors * self.cls_out_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(last, num_anchors * 4, 3, padding=1)

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
        return self.loss_by_feat(*self(feats), data_samples)

    def loss_by_feat(self, cls_scores: list[Tensor], bbox_preds: list[Tensor],
                     data_samples) -> dict[str, Tensor]:
        self._check_batch(cls_scores, data_samples)
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        device = cls_scores[0].device
        anchors = torch.cat(self._anchors(featmap_sizes, device,
                                          sample_metas(data_samples, len(data_samples))))
        return self.anchor_losses(flatten_levels(cls_scores, self.cls_out_channels),
                                  flatten_levels(bbox_preds, 4), anchors,
                                  self._inside(featmap_sizes, data_samples, device), data_samples)

    def _inside(self, featmap_sizes, data_samples, device) -> Tensor:
        """Bool [B, N]: the anchors that take part in training."""
        return torch.stack([inside_flags(self.prior_generator, featmap_sizes,
                                         s.metainfo.get("img_shape"), device,
                                         self.skip_padding_anchors) for s in data_samples])

    def _check_batch(self, cls_scores, data_samples) -> None:
        if len(data_samples) != cls_scores[0].shape[0]:
            raise ValueError(f"{self.owner}.loss: {len(data_samples)} data samples for a batch "
                             f"of {cls_scores[0].shape[0]} images")

    def anchor_losses(self, flat_cls: Tensor, flat_reg: Tensor, anchors: Tensor, inside: Tensor,
                      data_samples) -> dict[str, Tensor]:
        """``loss_cls`` and ``loss_bbox`` of flattened predictions [B, N, C'] /
        [B, N, 4] on ``anchors`` ([N, 4], or [B, N, 4] per image) of which
        ``inside`` [B, N] take part."""
        labels, counted, targets, pos = self.get_targets(anchors, None, data_samples, inside)
        if self.loss_normalizer == "image":
            parts = [self._losses(flat_cls[i], flat_reg[i],
                                  anchors if anchors.dim() == 2 else anchors[i],
                                  labels[i], counted[i], targets[i], pos[i])
                     for i in range(len(data_samples))]
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
        if not pos.any():
            return loss_cls, graph_zero(flat_reg)
        pred = flat_reg[pos]
        if self.reg_decoded_bbox:
            pred = self.bbox_coder.decode(anchors.expand(*pos.shape, 4)[pos], pred)
        return loss_cls, self.loss_bbox(pred, targets[pos], avg_factor=num_pos)

    def _anchors(self, featmap_sizes, device, metas: Sequence[dict]) -> list[Tensor]:
        """Anchors of every level for the batch's padded input size."""
        input_size = metas[0].get("batch_input_shape") if metas else None
        return self.prior_generator.grid_anchors(featmap_sizes, device, input_size=input_size)

    def get_targets(self, anchors: Tensor, featmap_sizes, data_samples,
                    inside: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Training targets of a batch, each [B, N, ...] in anchor order, for
        ``anchors`` [N, 4] (or [B, N, 4]) of which ``inside`` [B, N] take part
        (default: the anchors of cells inside each ``img_shape``).

        Returns ``labels`` (long, ``num_classes`` = background), ``counted``
        (bool: positive or negative, i.e. not ignored and inside the image),
        ``bbox_targets`` ([B, N, 4] deltas, or boxes for ``expects_boxes``
        losses; meaningful at positives) and ``pos`` (bool).
        """
        if inside is None:
            inside = self._inside(featmap_sizes, data_samples, anchors.device)
        batch, num = inside.shape
        labels = anchors.new_full((batch, num), self.num_classes, dtype=torch.long)
        counted = torch.zeros_like(inside)
        pos = torch.zeros_like(inside)
        bbox_targets = anchors.new_zeros((batch, num, 4))
        for i, sample in enumerate(data_samples):
            priors = anchors if anchors.dim() == 2 else anchors[i]
            gt_boxes, gt_labels, ignored = ground_truth(sample, anchors.device, self.num_classes,
                                                        self.owner)
            gt_inds = assign_inside(self.assigner, priors, inside[i], gt_boxes, gt_labels,
                                    ignored)
            labels[i], counted[i], pos[i], matched = anchor_labels(gt_inds, gt_labels,
                                                                   self.num_classes, gt_boxes)
            bbox_targets[i, pos[i]] = (matched if self.reg_decoded_bbox
                                       else self.bbox_coder.encode(priors[pos[i]], matched))
        return labels, counted, bbox_targets, pos

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None) -> list[InstanceData]:
        """Detections per image (``bboxes``, ``scores``, ``labels``) in the
        network input's (``img_shape``) coordinates."""
        outputs = self(feats)
        return self.predict_by_feat(*outputs, sample_metas(data_samples, feats[0].shape[0]))

    def predict_by_feat(self, cls_scores: list[Tensor], bbox_preds: list[Tensor],
                        batch_img_metas: Sequence[dict]) -> list[InstanceData]:
        """Detections per image in ``img_shape`` coordinates."""
        featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
        anchors = self._anchors(featmap_sizes, cls_scores[0].device, batch_img_metas)
        return self.decode_levels(cls_scores, bbox_preds, batch_img_metas, anchors)

    def decode_levels(self, cls_scores, bbox_preds, batch_img_metas: Sequence[dict],
                      priors: Sequence[Tensor], keeps: Sequence[Tensor] | None = None
                      ) -> list[InstanceData]:
        """Per image, :func:`decode_detections` of each level's scores and
        deltas on ``priors`` (per level [n, 4], or [B, n, 4] per image), only
        where ``keeps`` (per level bool [B, n]) when given."""
        results = []
        for i, meta in enumerate(batch_img_metas):
            level_scores, level_deltas, level_priors = [], [], []
            for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
                logits = cls[i].permute(1, 2, 0).reshape(-1, self.cls_out_channels)
                deltas = reg[i].permute(1, 2, 0).reshape(-1, 4)
                prior = priors[level] if priors[level].dim() == 2 else priors[level][i]
                if keeps is not None:
                    keep = keeps[level][i]
                    logits, deltas, prior = logits[keep], deltas[keep], prior[keep]
                level_scores.append(logits.sigmoid() if self.use_sigmoid_cls
                                    else logits.softmax(-1)[:, :-1])
                level_deltas.append(deltas)
                level_priors.append(prior)
            results.append(decode_detections(level_scores, level_deltas, level_priors,
                                             self.bbox_coder, self.test_cfg,
                                             meta.get("img_shape")))
        return results
