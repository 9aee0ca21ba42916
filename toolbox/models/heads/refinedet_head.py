"""RefineDet's two-step head (Zhang et al., "Single-Shot Refinement Neural
Network for Object Detection", CVPR 2018).

* **ARM** (anchor refinement module): on each backbone level, one 3x3 conv
  predicts a 2-way softmax (object / background) per anchor and one 3x3 conv
  4 offsets that refine the anchor (3 anchors per cell: ratios 0.5, 1, 2, one
  scale of 4x the stride, centred in the cell).
* **TCB** (:class:`TransferConnectionBlock`): turns each ARM feature into an
  ODM feature of ``feat_channels``, adding the deconvolved coarser TCB output.
* **ODM** (object detection module): on each TCB output, a 3x3 conv predicts
  a ``(num_classes + 1)``-way softmax (background last) and a 3x3 conv 4
  offsets relative to the *refined* anchors (the ARM offsets decoded onto
  the anchors, detached).
* **Negative anchor filtering**: anchors whose ARM background probability
  exceeds ``neg_anchor_thr`` (the paper's theta = 0.99) take no part in ODM
  training (neither positive nor negative) and are suppressed at inference.

Training: both modules assign their anchors (ARM: the anchors, binary
labels; ODM: the refined anchors, class labels) to ground truth by IoU 0.5
(each ground truth also claims its best anchor), mine hard negatives 3:1
per image on the softmax cross-entropy, and add a Smooth L1 box loss on the
positives; each module's sum is divided by its own number of positives.
Anchors of cells that only cover batch padding are never counted; anchors
inside ``ignored_instances`` boxes are ignored.

``use_arm=False`` gives the one-step ablation: no ARM at all (no refinement,
no filtering, no ARM loss); the TCB + ODM work on the plain anchors, like an
SSD head on TCB features.

Box offsets use :class:`DeltaXYWHBBoxCoder` with SSD's variances
(``target_stds=(0.1, 0.1, 0.2, 0.2)``).
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from toolbox.models.heads.dense import anchor_labels, assign_inside, graph_zero, inside_flags
from toolbox.models.heads.parts import (flatten_levels, ground_truth, loss_with_defaults,
                                        merge_cfg, resolve_input_shape, sample_metas,
                                        with_defaults)
from toolbox.models.layers.transfer_connection import TransferConnectionBlock
from toolbox.structures import (AnchorGenerator, DeltaXYWHBBoxCoder, MaxIoUAssigner,
                                batched_nms_postprocess, filter_scores_and_topk)
from toolbox.structures.feature_spec import FeatureSpec
from toolbox.structures.hard_negative_mining import hard_negative_mining

__all__ = ["RefineDetHead"]

DEFAULT_ANCHOR_GENERATOR = dict(ratios=(0.5, 1.0, 2.0), scales=(4.0,), center_offset=0.5)
DEFAULT_ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0,
                        gt_max_assign_all=False, ignore_iof_thr=0.5)
DEFAULT_BBOX_CODER = dict(target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.1, 0.1, 0.2, 0.2))
DEFAULT_LOSS_CLS = dict(type="CrossEntropyLoss", use_sigmoid=False, reduction="none",
                        loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0)
DEFAULT_TEST_CFG = dict(nms_pre=1000, score_thr=0.01, iou_thr=0.45, max_per_img=100)

StageTargets = tuple[Tensor, Tensor, Tensor, Tensor]  # labels, counted, bbox targets, pos


class RefineDetHead(BaseModule):
    """RefineDet head: ARM + TCB + ODM.

    Every sub-config merges over the default named below; a loss of another
    ``type`` replaces it (docs/heads.md).

    Args:
        num_classes: number of object classes (no background entry).
        in_channels: channels of each input level (one int for all, or one
            per level; the TCBs map every level to ``feat_channels``); from
            ``input_shape`` when absent.
        strides: stride of each input level; their number is the number of
            levels the head is built for (RefineDet320-VGG16: 8, 16, 32, 64,
            the default without ``input_shape``).
        feat_channels: width of the TCB / ODM features (256 in the paper).
        use_arm: False for the one-step ablation (ODM on the plain anchors).
        arm_stacked_convs: 3x3 convs (``feat_channels`` wide, ``norm_cfg``,
            ReLU) per level between the backbone feature and the ARM's two
            predictors, shared by both (0, the paper: the predictors sit on
            the backbone feature itself). For backbones whose stage outputs
            are narrow and shallow (MobileNetV3-Small: 16 channels at stride 4).
        neg_anchor_thr: theta of negative anchor filtering (ARM background
            probability above which an anchor is dropped from the ODM).
        neg_pos_ratio: hard negatives kept per positive, per image.
        anchor_generator: :class:`AnchorGenerator` arguments (default ratios
            0.5/1/2, ``scales=(4,)``, ``center_offset=0.5``).
        arm_assigner, odm_assigner: :class:`MaxIoUAssigner` arguments
            (default IoU 0.5 for positives and negatives, each ground truth
            claims its best anchor, ``ignore_iof_thr=0.5``).
        bbox_coder: :class:`DeltaXYWHBBoxCoder` arguments (default SSD's
            variances 0.1, 0.1, 0.2, 0.2).
        loss_cls: a ``LOSSES`` config for both modules' classification
            (default softmax ``CrossEntropyLoss`` with ``reduction='none'``):
            called ``loss_cls(logits [M, K], labels [M])`` it must return the
            per-anchor losses [M], which mine the hard negatives and, summed
            over positives and mined negatives, are divided by the positives.
        loss_bbox: a ``LOSSES`` config for both modules (default
            SmoothL1Loss, beta 1); ``expects_boxes`` losses get decoded boxes.
        norm_cfg: optional norm in the TCBs (None in the paper).
        test_cfg: ``nms_pre`` (candidates per image), ``score_thr``,
            ``iou_thr`` and ``max_per_img``.
        input_shape: the input levels' :class:`FeatureSpec`.
    """

    def __init__(self, num_classes: int, in_channels: int | Sequence[int] | None = None,
                 strides: Sequence[int] | None = None, feat_channels: int = 256,
                 use_arm: bool = True, arm_stacked_convs: int = 0,
                 neg_anchor_thr: float = 0.99, neg_pos_ratio: float = 3.0,
                 anchor_generator: dict | None = None, arm_assigner: dict | None = None,
                 odm_assigner: dict | None = None, bbox_coder: dict | None = None,
                 loss_bbox: dict | None = None, norm_cfg: dict | None = None,
                 test_cfg: dict | None = None, loss_cls: dict | None = None,
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError("RefineDetHead: 'num_classes' must be a positive int, "
                             f"got {num_classes!r}")
        in_channels, strides = resolve_input_shape("RefineDetHead", input_shape, in_channels,
                                                   strides)
        self.strides = tuple(int(s) for s in (strides or (8, 16, 32, 64)))
        if not self.strides:
            raise ValueError("RefineDetHead: 'strides' must name at least one level")
        if isinstance(in_channels, int):
            in_channels = (in_channels,) * len(self.strides)
        in_channels = tuple(in_channels)
        if len(in_channels) != len(self.strides):
            raise ValueError(f"RefineDetHead: 'in_channels' has {len(in_channels)} levels "
                             f"{in_channels} but 'strides' has {len(self.strides)} "
                             f"{self.strides}; give one of each per input level")
        if not isinstance(arm_stacked_convs, int) or arm_stacked_convs < 0:
            raise ValueError("RefineDetHead: 'arm_stacked_convs' must be an int >= 0, "
                             f"got {arm_stacked_convs!r}")
        if not 0.0 < neg_anchor_thr <= 1.0:
            raise ValueError("RefineDetHead: 'neg_anchor_thr' must be in (0, 1], "
                             f"got {neg_anchor_thr}")
        if not neg_pos_ratio > 0:
            raise ValueError(f"RefineDetHead: 'neg_pos_ratio' must be > 0, got {neg_pos_ratio}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = int(feat_channels)
        self.use_arm = bool(use_arm)
        self.arm_stacked_convs = arm_stacked_convs if self.use_arm else 0
        self.neg_anchor_thr = float(neg_anchor_thr)
        self.neg_pos_ratio = float(neg_pos_ratio)

        self.prior_generator = with_defaults(anchor_generator, DEFAULT_ANCHOR_GENERATOR,
                                             AnchorGenerator, "RefineDetHead.anchor_generator",
                                             strides=self.strides)
        if self.prior_generator.strides != self.strides:
            raise ValueError(f"RefineDetHead: anchor_generator strides "
                             f"{self.prior_generator.strides} disagree with 'strides' {self.strides}")
        self.arm_assigner = with_defaults(arm_assigner, DEFAULT_ASSIGNER, MaxIoUAssigner,
                                          "RefineDetHead.arm_assigner")
        self.odm_assigner = with_defaults(odm_assigner, DEFAULT_ASSIGNER, MaxIoUAssigner,
                                          "RefineDetHead.odm_assigner")
        self.bbox_coder = with_defaults(bbox_coder, DEFAULT_BBOX_CODER, DeltaXYWHBBoxCoder,
                                        "RefineDetHead.bbox_coder")
        self.loss_cls = loss_with_defaults(loss_cls, DEFAULT_LOSS_CLS)
        if getattr(self.loss_cls, "use_sigmoid", False) or \
                getattr(self.loss_cls, "reduction", "none") != "none":
            raise ValueError("RefineDetHead: 'loss_cls' must be a softmax loss with "
                             "reduction='none' (per-anchor losses for hard negative mining)")
        self.loss_bbox = loss_with_defaults(loss_bbox, DEFAULT_LOSS_BBOX)
        self.reg_decoded_bbox = bool(getattr(self.loss_bbox, "expects_boxes", False))
        self.test_cfg = merge_cfg("RefineDetHead", DEFAULT_TEST_CFG, test_cfg, "test_cfg")

        anchors = self.num_base_priors = self.prior_generator.num_base_anchors
        self.cls_out_channels = num_classes + 1  # softmax, background last
        if self.use_arm:
            self.arm_convs = nn.ModuleList(self._arm_tower(c, norm_cfg) for c in in_channels)
            arm_in = [self.feat_channels if self.arm_stacked_convs else c for c in in_channels]
            self.arm_cls = nn.ModuleList(nn.Conv2d(c, anchors * 2, 3, padding=1) for c in arm_in)
            self.arm_reg = nn.ModuleList(nn.Conv2d(c, anchors * 4, 3, padding=1) for c in arm_in)
        last = len(in_channels) - 1
        self.tcbs = nn.ModuleList(
            TransferConnectionBlock(c, self.feat_channels, has_upper=i < last, norm_cfg=norm_cfg)
            for i, c in enumerate(in_channels))
        self.odm_cls = nn.ModuleList(nn.Conv2d(self.feat_channels, anchors * self.cls_out_channels,
                                               3, padding=1) for _ in in_channels)
        self.odm_reg = nn.ModuleList(nn.Conv2d(self.feat_channels, anchors * 4, 3, padding=1)
                                     for _ in in_channels)
        self._default_init()

    def _arm_tower(self, in_channels: int, norm_cfg: dict | None) -> nn.Sequential:
        widths = [in_channels] + [self.feat_channels] * self.arm_stacked_convs
        return nn.Sequential(*(ConvModule(a, b, 3, padding=1, norm_cfg=norm_cfg)
                               for a, b in zip(widths, widths[1:])))

    def _default_init(self) -> None:
        """Xavier-uniform convs with zero biases (the authors' Caffe fillers)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            self._default_init()

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Sequence[Tensor]):
        """Per level: ``arm_cls`` [B, A * 2, H, W], ``arm_reg`` [B, A * 4, H, W]
        (both None with ``use_arm=False``), ``odm_cls`` [B, A * (C + 1), H, W]
        and ``odm_reg`` [B, A * 4, H, W]."""
        if len(feats) != len(self.strides):
            raise ValueError(f"RefineDetHead: got {len(feats)} feature maps but the head is "
                             f"configured for {len(self.strides)} levels (strides {self.strides})")
        for level, (feat, channels) in enumerate(zip(feats, self.in_channels)):
            if feat.dim() != 4 or feat.shape[1] != channels:
                raise ValueError(f"RefineDetHead: level {level} should be [B, {channels}, H, W] "
                                 f"(in_channels {self.in_channels}), got {tuple(feat.shape)}")
        arm_cls = arm_reg = None
        if self.use_arm:
            arm_feats = [tower(f) for tower, f in zip(self.arm_convs, feats)]
            arm_cls = [conv(f) for conv, f in zip(self.arm_cls, arm_feats)]
            arm_reg = [conv(f) for conv, f in zip(self.arm_reg, arm_feats)]
        odm_feats: list[Tensor] = [None] * len(feats)
        upper = None
        for level in reversed(range(len(feats))):  # top-down through the TCBs
            upper = odm_feats[level] = self.tcbs[level](feats[level], upper)
        odm_cls = [conv(f) for conv, f in zip(self.odm_cls, odm_feats)]
        odm_reg = [conv(f) for conv, f in zip(self.odm_reg, odm_feats)]
        return arm_cls, arm_reg, odm_cls, odm_reg

    def refine_anchors(self, anchors: Tensor, arm_deltas: Tensor) -> Tensor:
        """The ODM's priors: ARM offsets [B, N, 4] decoded onto ``anchors``
        [N, 4], detached and not clipped."""
        return self.bbox_coder.decode(anchors, arm_deltas.detach())

    def filtered_anchors(self, arm_logits: Tensor) -> Tensor:
        """Bool [B, N]: anchors whose ARM background probability exceeds theta."""
        return arm_logits.detach().softmax(dim=-1)[..., 1] > self.neg_anchor_thr

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], data_samples) -> dict[str, Tensor]:
        return self.loss_by_feat(*self(feats), data_samples)

    def loss_by_feat(self, arm_cls, arm_reg, odm_cls: list[Tensor], odm_reg: list[Tensor],
                     data_samples) -> dict[str, Tensor]:
        batch = odm_cls[0].shape[0]
        if len(data_samples) != batch:
            raise ValueError(f"RefineDetHead.loss: {len(data_samples)} data samples for a batch "
                             f"of {batch} images")
        featmap_sizes = [tuple(m.shape[-2:]) for m in odm_cls]
        anchors = torch.cat(self.prior_generator.grid_anchors(featmap_sizes, odm_cls[0].device))
        arm_logits = flatten_levels(arm_cls, 2) if self.use_arm else None
        arm_deltas = flatten_levels(arm_reg, 4) if self.use_arm else None
        targets = self.get_targets(anchors, featmap_sizes, data_samples, arm_logits, arm_deltas)
        losses = {}
        if self.use_arm:
            arm_priors = anchors.expand(batch, -1, -1)
            losses.update(self._module_loss("arm", arm_logits, arm_deltas, arm_priors,
                                            targets["arm"]))
        losses.update(self._module_loss("odm", flatten_levels(odm_cls, self.cls_out_channels),
                                        flatten_levels(odm_reg, 4), targets["odm_priors"],
                                        targets["odm"]))
        return losses

    def get_targets(self, anchors: Tensor, featmap_sizes, data_samples,
                    arm_logits: Tensor | None = None, arm_deltas: Tensor | None = None) -> dict:
        """Targets of both modules for a batch.

        Returns a dict with ``'arm'`` (None without ARM) and ``'odm'``, each
        ``(labels [B, N], counted [B, N], bbox_targets [B, N, 4], pos [B, N])``
        (labels: ARM 0 = object, 1 = background; ODM ``num_classes`` =
        background; counted: positive or negative candidate), plus
        ``'odm_priors'`` [B, N, 4] (refined anchors, or the anchors) and
        ``'filtered'`` [B, N] (anchors dropped by negative anchor filtering).
        """
        batch = len(data_samples)
        inside = torch.stack([self._inside(featmap_sizes, s, anchors) for s in data_samples])
        plain = anchors.expand(batch, -1, -1)
        if not self.use_arm:
            filtered = torch.zeros_like(inside)
            return dict(arm=None, odm=self._assign(plain, inside, data_samples, False),
                        odm_priors=plain, filtered=filtered)
        if arm_logits is None or arm_deltas is None:
            raise ValueError("RefineDetHead.get_targets: 'arm_logits' and 'arm_deltas' are "
                             "needed with use_arm=True")
        filtered = self.filtered_anchors(arm_logits)
        refined = self.refine_anchors(anchors, arm_deltas)
        return dict(arm=self._assign(plain, inside, data_samples, True),
                    odm=self._assign(refined, inside & ~filtered, data_samples, False),
                    odm_priors=refined, filtered=filtered)

    def _inside(self, featmap_sizes, sample, anchors: Tensor) -> Tensor:
        return inside_flags(self.prior_generator, featmap_sizes,
                            sample.metainfo.get("img_shape"), anchors.device)

    def _assign(self, priors: Tensor, usable: Tensor, data_samples, binary: bool) -> StageTargets:
        """Assign each image's ``priors`` [B, N, 4] where ``usable`` [B, N]."""
        batch, num = usable.shape
        background = 1 if binary else self.num_classes
        assigner = self.arm_assigner if binary else self.odm_assigner
        labels = priors.new_full((batch, num), background, dtype=torch.long)
        bbox_targets = priors.new_zeros((batch, num, 4))
        counted, pos = torch.zeros_like(usable), torch.zeros_like(usable)
        for i, sample in enumerate(data_samples):
            gt_boxes, gt_labels, ignored = ground_truth(sample, priors.device, self.num_classes,
                                                        "RefineDetHead")
            gt_inds = assign_inside(assigner, priors[i], usable[i], gt_boxes, gt_labels, ignored)
            labels[i], counted[i], pos[i], matched = anchor_labels(
                gt_inds, None if binary else gt_labels, background, gt_boxes)
            bbox_targets[i, pos[i]] = (matched if self.reg_decoded_bbox
                                       else self.bbox_coder.encode(priors[i][pos[i]], matched))
        return labels, counted, bbox_targets, pos

    def _module_loss(self, name: str, logits: Tensor, deltas: Tensor, priors: Tensor,
                     targets: StageTargets) -> dict[str, Tensor]:
        """Softmax CE on positives + mined negatives, box loss on positives,
        both divided by the module's number of positives."""
        labels, counted, bbox_targets, pos = targets
        batch, num, channels = logits.shape
        ce = self.loss_cls(logits.reshape(-1, channels), labels.reshape(-1)).view(batch, num)
        neg = hard_negative_mining(ce.detach(), pos, counted & ~pos, self.neg_pos_ratio)
        num_pos = max(float(pos.sum()), 1.0)
        loss_cls = ce[pos | neg].sum() / num_pos
        if pos.any():
            pred = deltas[pos]
            if self.reg_decoded_bbox:
                pred = self.bbox_coder.decode(priors[pos], pred)
            loss_bbox = self.loss_bbox(pred, bbox_targets[pos], avg_factor=num_pos)
        else:
            loss_bbox = graph_zero(deltas)
        return {f"{name}_loss_cls": loss_cls, f"{name}_loss_bbox": loss_bbox}

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], data_samples=None) -> list[InstanceData]:
        """Detections per image in the network input's (``img_shape``)
        coordinates."""
        outputs = self(feats)
        batch = outputs[2][0].shape[0]
        metas = sample_metas(data_samples, batch)
        return self.predict_by_feat(*outputs, batch_img_metas=metas)

    def predict_by_feat(self, arm_cls, arm_reg, odm_cls: list[Tensor], odm_reg: list[Tensor],
                        batch_img_metas: Sequence[dict]) -> list[InstanceData]:
        featmap_sizes = [tuple(m.shape[-2:]) for m in odm_cls]
        anchors = torch.cat(self.prior_generator.grid_anchors(featmap_sizes, odm_cls[0].device))
        scores_all = flatten_levels(odm_cls, self.cls_out_channels).softmax(-1)[..., :-1]
        deltas_all = flatten_levels(odm_reg, 4)
        if self.use_arm:
            arm_logits = flatten_levels(arm_cls, 2)
            priors_all = self.refine_anchors(anchors, flatten_levels(arm_reg, 4))
            scores_all = scores_all.masked_fill(self.filtered_anchors(arm_logits)[..., None], 0.0)
        else:
            priors_all = anchors.expand(scores_all.shape[0], -1, -1)
        cfg = self.test_cfg
        results = []
        for i, meta in enumerate(batch_img_metas):
            scores, labels, keep = filter_scores_and_topk(scores_all[i], cfg["score_thr"],
                                                          cfg["nms_pre"])
            boxes = self.bbox_coder.decode(priors_all[i][keep], deltas_all[i][keep],
                                           max_shape=meta.get("img_shape"))
            boxes, scores, labels = batched_nms_postprocess(boxes, scores, labels,
                                                            cfg["iou_thr"], cfg["max_per_img"])
            results.append(InstanceData(bboxes=boxes, scores=scores, labels=labels))
        return results
