"""Faster R-CNN's second stage: RoIAlign on the FPN level that suits each
proposal, two shared fully connected layers, a softmax classifier over
``num_classes + 1`` (the last is background) and class-specific box deltas.

Level mapping (Lin et al., FPN, Eq. 1): a RoI of width ``w`` and height
``h`` is pooled from level ``k = floor(k0 + log2(sqrt(w h) / 224))`` with
``k0 = 4``, clamped to the levels available (``log2`` of the strides), as
torchvision's ``MultiScaleRoIAlign`` does.

Training (per image): the ground-truth boxes are added to the proposals,
proposals are assigned by IoU (positive >= 0.5, negative < 0.5), and 512
are sampled with at most 25 % positives; the classification loss covers
every sampled RoI, the box loss the positives (deltas normalised by stds
0.1 / 0.1 / 0.2 / 0.2), both averaged over the sampled RoIs.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torchvision.ops import roi_align

from toolbox.models.heads.dense import graph_zero
from toolbox.models.heads.parts import (ground_truth, loss_with_defaults, merge_cfg,
                                        resolve_input_shape, sample_metas, uniform_channels,
                                        with_defaults)
from toolbox.models.layers.bag_roi_align import bag_roi_align
from toolbox.structures import DeltaXYWHBBoxCoder, MaxIoUAssigner, batched_nms_postprocess
from toolbox.structures.feature_spec import FeatureSpec
from toolbox.structures.random_sampler import RandomSampler

__all__ = ["RoIBoxHead"]

DEFAULT_ASSIGNER = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                        match_low_quality=False, ignore_iof_thr=-1.0)
DEFAULT_SAMPLER = dict(num=512, pos_fraction=0.25, neg_pos_ub=-1)
DEFAULT_BBOX_CODER = dict(target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.1, 0.1, 0.2, 0.2))
DEFAULT_LOSS_CLS = dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0)
DEFAULT_LOSS_BBOX = dict(type="L1Loss", loss_weight=1.0)
DEFAULT_TEST_CFG = dict(score_thr=0.05, iou_thr=0.5, max_per_img=100, min_bbox_size=0.0)


def map_roi_levels(boxes: Tensor, strides: Sequence[int], canonical_scale: float = 224.0,
                   canonical_level: int = 4, eps: float = 1e-6) -> Tensor:
    """Index (into ``strides``) of the pyramid level each box [N, 4] is pooled
    from: ``floor(canonical_level + log2(sqrt(area) / canonical_scale))``
    clamped to ``[log2(strides[0]), log2(strides[-1])]``."""
    k_min, k_max = math.log2(strides[0]), math.log2(strides[-1])
    size = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    level = torch.floor(canonical_level + torch.log2(size / canonical_scale) + eps)
    return (level.clamp(k_min, k_max) - k_min).long()


class RoIBoxHead(BaseModule):
    """Box head of a two-stage detector.

    Every sub-config merges over the default named below; a loss of another
    ``type`` replaces it (docs/heads.md). Detections are in the network
    input's (``img_shape``) coordinates, like the proposals.

    Args:
        num_classes: object classes (no background entry).
        in_channels: channels of the feature maps (one int, shared by levels);
            from ``input_shape`` when absent.
        strides: stride of each feature level, in increasing order of
            consecutive powers of two (the level mapping needs them); from
            ``input_shape`` when absent.
        roi_size: RoIAlign output size.
        sampling_ratio: RoIAlign sampling points per bin (0: adaptive).
        aligned: RoIAlign's half-pixel alignment.
        fc_channels, num_fcs: the shared fully connected layers.
        canonical_scale, canonical_level: the level mapping's 224 and k0 = 4.
        assigner, sampler, bbox_coder: :class:`MaxIoUAssigner`,
            :class:`RandomSampler`, :class:`DeltaXYWHBBoxCoder` arguments.
        loss_cls: a softmax ``LOSSES`` config (default ``CrossEntropyLoss``).
        loss_bbox: a ``LOSSES`` config (default ``L1Loss``; ``SmoothL1Loss``).
        test_cfg: ``score_thr``, ``iou_thr`` (per-class NMS), ``max_per_img``,
            ``min_bbox_size`` (boxes narrower or lower than it are dropped
            before NMS; torchvision's 1e-2; default 0: none).
        roi_levels: indices of the input levels RoIs are pooled from (default
            all), e.g. ``(0, 1, 2, 3)`` to leave out FPN's max-pooled P6 as
            torchvision's ``MultiScaleRoIAlign(['0', '1', '2', '3'])`` does;
            their strides are the ones the level mapping needs.
        gt_proposals: where training adds the ground-truth boxes to the
            proposals: ``'first'`` (default) or ``'last'`` (torchvision).
        input_shape: the input levels' :class:`FeatureSpec`.
    """

    def __init__(self, num_classes: int, in_channels: int | Sequence[int] | None = None,
                 strides: Sequence[int] | None = None, roi_size: int = 7, sampling_ratio: int = 0,
                 aligned: bool = True, fc_channels: int = 1024, num_fcs: int = 2,
                 canonical_scale: float = 224.0, canonical_level: int = 4,
                 assigner: dict | None = None, sampler: dict | None = None,
                 bbox_coder: dict | None = None, loss_cls: dict | None = None,
                 loss_bbox: dict | None = None, test_cfg: dict | None = None,
                 roi_levels: Sequence[int] | None = None, gt_proposals: str = "first",
                 input_shape: Sequence[FeatureSpec] | None = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        in_channels, strides = resolve_input_shape("RoIBoxHead", input_shape, in_channels,
                                                   strides)
        if strides is None:
            raise ValueError("RoIBoxHead: give 'strides' or 'input_shape'")
        if gt_proposals not in ("first", "last"):
            raise ValueError(f"RoIBoxHead: 'gt_proposals' must be 'first' or 'last', "
                             f"got {gt_proposals!r}")
        self.gt_proposals = gt_proposals
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"RoIBoxHead: 'num_classes' must be a positive int, got {num_classes!r}")
        in_channels = uniform_channels(in_channels, "RoIBoxHead")
        strides = tuple(int(s) for s in strides)
        if roi_levels is None:
            roi_levels = tuple(range(len(strides)))
        roi_levels = tuple(roi_levels)
        if not roi_levels or list(roi_levels) != sorted(set(roi_levels)) or any(
                not isinstance(i, int) or not 0 <= i < len(strides) for i in roi_levels):
            raise ValueError(f"RoIBoxHead: 'roi_levels' must be increasing indices into the "
                             f"{len(strides)} input levels {strides}, got {roi_levels}")
        self.roi_levels = roi_levels
        pooled = tuple(strides[i] for i in roi_levels)
        if any(s <= 0 or s & (s - 1) for s in pooled) or any(
                b != 2 * a for a, b in zip(pooled, pooled[1:])):
            raise ValueError("RoIBoxHead: the strides of the pooled levels must be consecutive "
                             f"powers of two in increasing order (e.g. (8, 16, 32)), got {pooled}")
        self.roi_strides = pooled
        if num_fcs < 1:
            raise ValueError(f"RoIBoxHead: 'num_fcs' must be >= 1, got {num_fcs}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.strides = strides
        self.roi_size = int(roi_size)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.canonical_scale = float(canonical_scale)
        self.canonical_level = int(canonical_level)
        self.assigner = with_defaults(assigner, DEFAULT_ASSIGNER, MaxIoUAssigner,
                                      "RoIBoxHead.assigner")
        self.sampler = with_defaults(sampler, DEFAULT_SAMPLER, RandomSampler, "RoIBoxHead.sampler")
        self.bbox_coder = with_defaults(bbox_coder, DEFAULT_BBOX_CODER, DeltaXYWHBBoxCoder,
                                        "RoIBoxHead.bbox_coder")
        self.loss_cls = loss_with_defaults(loss_cls, DEFAULT_LOSS_CLS)
        self.loss_bbox = loss_with_defaults(loss_bbox, DEFAULT_LOSS_BBOX)
        if getattr(self.loss_cls, "use_sigmoid", False):
            raise ValueError("RoIBoxHead: 'loss_cls' must be a softmax loss over "
                             "num_classes + 1 logits (background last)")
        self.test_cfg = merge_cfg("RoIBoxHead", DEFAULT_TEST_CFG, test_cfg, "test_cfg")

        fcs, width = [], in_channels * self.roi_size ** 2
        for _ in range(num_fcs):
            fcs += [nn.Linear(width, fc_channels), nn.ReLU(inplace=True)]
            width = fc_channels
        self.shared_fcs = nn.Sequential(*fcs)
        self.fc_cls = nn.Linear(width, num_classes + 1)
        self.fc_reg = nn.Linear(width, num_classes * 4)
        self._default_init()

    def _default_init(self) -> None:
        """Xavier shared fcs; Normal(0, 0.01) classifier, Normal(0, 0.001) regressor."""
        for module in self.shared_fcs:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            self._default_init()

    # ------------------------------------------------------------------ forward
    def roi_features(self, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
        """RoIAlign features [K, C, S, S] of ``rois`` [K, 5] (batch index, x1 y1
        x2 y2 in input pixels), each from its mapped level: torchvision's
        ``roi_align``, on a CPU through its faster equal :func:`bag_roi_align`."""
        if len(feats) != len(self.strides):
            raise ValueError(f"RoIBoxHead: got {len(feats)} feature maps for "
                             f"{len(self.strides)} strides {self.strides}")
        feats = [feats[i] for i in self.roi_levels]
        if feats[0].device.type == "cpu":  # one vectorised gather for every level
            levels = (map_roi_levels(rois[:, 1:], self.roi_strides, self.canonical_scale,
                                     self.canonical_level) if len(feats) > 1
                      else rois.new_zeros(rois.shape[0], dtype=torch.long))
            return bag_roi_align(feats, rois, levels, self.roi_size,
                                 [1.0 / s for s in self.roi_strides], self.sampling_ratio,
                                 self.aligned)
        if len(feats) == 1:  # one level: no mapping, no scatter
            return roi_align(feats[0], rois, self.roi_size, 1.0 / self.roi_strides[0],
                             self.sampling_ratio, self.aligned)
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], self.roi_size, self.roi_size))
        levels = map_roi_levels(rois[:, 1:], self.roi_strides, self.canonical_scale,
                                self.canonical_level)
        for level, (feat, stride) in enumerate(zip(feats, self.roi_strides)):
            index = torch.nonzero(levels == level).flatten()
            if index.numel():
                out[index] = roi_align(feat, rois[index], self.roi_size, 1.0 / stride,
                                       self.sampling_ratio, self.aligned)
        return out

    def forward(self, feats: Sequence[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits [K, num_classes + 1] and deltas [K, num_classes * 4]."""
        x = self.shared_fcs[1:](self._first_fc(self.roi_features(feats, rois)))
        return self.fc_cls(x), self.fc_reg(x)

    def _first_fc(self, pooled: Tensor) -> Tensor:
        """The first shared fc on [K, C, S, S] features. Channels-last ones (the
        CPU RoIAlign's layout) meet the fc's weight permuted to match, which
        moves C x S x S x out numbers instead of K x C x S x S."""
        fc = self.shared_fcs[0]
        channels_last = pooled.permute(0, 2, 3, 1)
        if pooled.is_contiguous() or not channels_last.is_contiguous():
            return fc(pooled.flatten(1))
        count, channels, size, _ = pooled.shape
        weight = fc.weight.view(-1, channels, size, size).permute(0, 2, 3, 1)
        return F.linear(channels_last.reshape(count, -1), weight.reshape(fc.out_features, -1),
                        fc.bias)

    @staticmethod
    def to_rois(boxes: Sequence[Tensor]) -> Tensor:
        """Per-image boxes -> [K, 5] RoIs with the batch index first."""
        return torch.cat([torch.cat([b.new_full((b.shape[0], 1), float(i)), b[:, :4]], dim=1)
                          for i, b in enumerate(boxes)])

    # --------------------------------------------------------------------- loss
    def loss(self, feats: Sequence[Tensor], proposals: Sequence[InstanceData],
             data_samples) -> dict[str, Tensor]:
        if len(proposals) != len(data_samples):
            raise ValueError(f"RoIBoxHead.loss: {len(proposals)} proposal sets for "
                             f"{len(data_samples)} data samples")
        boxes, labels, targets, positive = [], [], [], []
        for proposal, sample in zip(proposals, data_samples):
            b, lab, tgt, pos = self._sample_rois(proposal.bboxes.detach(), sample, feats[0].device)
            boxes.append(b)
            labels.append(lab)
            targets.append(tgt)
            positive.append(pos)
        labels, targets, positive = torch.cat(labels), torch.cat(targets), torch.cat(positive)
        cls_scores, bbox_preds = self(feats, self.to_rois(boxes))
        num_samples = max(float(labels.numel()), 1.0)
        loss_cls = self.loss_cls(cls_scores, labels, avg_factor=num_samples)
        if positive.any():
            deltas = bbox_preds.view(-1, self.num_classes, 4)[positive, labels[positive]]
            loss_bbox = self.loss_bbox(deltas, targets[positive], avg_factor=num_samples)
        else:
            loss_bbox = graph_zero(bbox_preds)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)

    def _sample_rois(self, proposals: Tensor, sample, device):
        """Sampled RoIs of one image (gt boxes added first), their labels
        (``num_classes`` = background), delta targets and positive mask."""
        gt_boxes, gt_labels, ignored = ground_truth(sample, device, self.num_classes, "RoIBoxHead")
        proposals = proposals.to(device).reshape(-1, 4)
        candidates = torch.cat([proposals, gt_boxes] if self.gt_proposals == "last"
                               else [gt_boxes, proposals])
        result = self.assigner.assign(candidates, gt_boxes, gt_labels, ignored)
        pos, neg = self.sampler.sample(result.gt_inds)
        chosen = torch.cat([pos, neg])
        boxes = candidates[chosen]
        labels = torch.full((chosen.numel(),), self.num_classes, dtype=torch.long, device=device)
        labels[:pos.numel()] = gt_labels[result.gt_inds[pos] - 1]
        targets = torch.zeros_like(boxes)
        targets[:pos.numel()] = self.bbox_coder.encode(candidates[pos],
                                                       gt_boxes[result.gt_inds[pos] - 1])
        positive = torch.arange(chosen.numel(), device=device) < pos.numel()
        return boxes, labels, targets, positive

    # ------------------------------------------------------------------ predict
    def predict(self, feats: Sequence[Tensor], proposals: Sequence[InstanceData],
                data_samples=None) -> list[InstanceData]:
        """Detections per image (``bboxes``, ``scores``, ``labels``) in the
        network input's (``img_shape``) coordinates, like ``proposals``."""
        metas = sample_metas(data_samples, len(proposals))
        boxes = [p.bboxes.reshape(-1, 4) for p in proposals]
        counts = [b.shape[0] for b in boxes]
        if sum(counts):
            cls_scores, bbox_preds = self(feats, self.to_rois(boxes))
        else:
            cls_scores = feats[0].new_zeros((0, self.num_classes + 1))
            bbox_preds = feats[0].new_zeros((0, self.num_classes * 4))
        results = []
        for rois, scores, deltas, meta in zip(boxes, cls_scores.split(counts),
                                              bbox_preds.split(counts), metas):
            results.append(self._predict_image(rois, scores, deltas, meta))
        return results

    def _predict_image(self, rois: Tensor, logits: Tensor, deltas: Tensor,
                       meta: dict) -> InstanceData:
        cfg = self.test_cfg
        scores = logits.softmax(-1)[:, :-1]  # [K, C], background dropped
        priors = rois[:, None, :].expand(-1, self.num_classes, 4)
        decoded = self.bbox_coder.decode(priors, deltas.view(-1, self.num_classes, 4),
                                         max_shape=meta.get("img_shape"))
        keep = scores > cfg["score_thr"]
        if cfg["min_bbox_size"] > 0:
            size = cfg["min_bbox_size"]
            keep &= ((decoded[..., 2] - decoded[..., 0]) >= size) & \
                ((decoded[..., 3] - decoded[..., 1]) >= size)
        labels = torch.nonzero(keep)[:, 1]
        boxes, scores, labels = batched_nms_postprocess(
            decoded[keep], scores[keep], labels, cfg["iou_thr"], cfg["max_per_img"])
        return InstanceData(bboxes=boxes, scores=scores, labels=labels)
