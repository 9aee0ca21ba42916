"""The dense-head toolkit: the steps anchor-based heads share (RetinaNet,
GA-RetinaNet, RPN, GA-RPN, RefineDet), as functions.

* :func:`assign_inside` - assign the anchors inside the image, ``-1`` elsewhere;
* :func:`anchor_labels` - class labels, counted / positive masks and the
  matched gt boxes from ``gt_inds``;
* :func:`regression_loss` - a box loss with its normaliser, and the DDP
  zero-loss fallback (:func:`graph_zero`) when nothing is positive;
* :func:`decode_detections` - per-level top-k, decoding and class-wise NMS
  of one image (RetinaNet's and GA-RetinaNet's ``predict_by_feat``);
* :func:`select_proposals` - per-level top-k, decoding and per-level NMS of
  one image (RPN's and GA-RPN's).

Everything here works in the network input's coordinates (``img_shape``);
detectors map results to the original image with
:func:`toolbox.structures.boxes_to_original`. Sub-config defaults and input
shapes: :mod:`toolbox.models.heads.parts`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from toolbox.models.heads.parts import (CLASS_AGNOSTIC, build_loss, build_part, flatten_levels,
                                        ground_truth, loss_with_defaults, merge_cfg,
                                        regression_pair, resolve_input_shape, sample_metas,
                                        uniform_channels, with_defaults)
from toolbox.structures.nms import (batched_nms_postprocess, filter_scores_and_topk,
                                    proposal_nms)

__all__ = ["CLASS_AGNOSTIC", "assign_inside", "anchor_labels", "graph_zero", "regression_loss",
           "decode_detections", "select_proposals", "inside_flags",
           # re-exported from parts
           "build_loss", "build_part", "flatten_levels", "ground_truth", "loss_with_defaults",
           "merge_cfg", "regression_pair", "resolve_input_shape", "sample_metas",
           "uniform_channels", "with_defaults"]


def inside_flags(prior_generator, featmap_sizes, img_shape, device, enabled: bool = True
                 ) -> Tensor:
    """Bool [N]: anchors whose cell lies inside ``img_shape`` (all when
    ``img_shape`` is None or ``enabled`` is False)."""
    if img_shape is None or not enabled:
        num = sum(h * w for h, w in featmap_sizes) * prior_generator.num_base_anchors
        return torch.ones(num, dtype=torch.bool, device=device)
    return torch.cat(prior_generator.valid_flags(featmap_sizes, img_shape, device))


def assign_inside(assigner, anchors: Tensor, inside: Tensor, gt_boxes: Tensor,
                  gt_labels: Tensor | None, ignored: Tensor | None) -> Tensor:
    """``gt_inds`` [N] of ``anchors`` [N, 4]: the assigner's result (0
    negative, k > 0 the k-th gt box, -1 ignored) where ``inside``, -1 elsewhere."""
    result = assigner.assign(anchors[inside], gt_boxes, gt_labels, ignored)
    gt_inds = torch.full(inside.shape, -1, dtype=torch.long, device=anchors.device)
    gt_inds[inside] = result.gt_inds
    return gt_inds


def anchor_labels(gt_inds: Tensor, gt_labels: Tensor | None, background: int,
                  gt_boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(labels [N], counted [N], pos [N], matched [P, 4])`` from ``gt_inds``:
    labels are ``background`` except at positives (their gt label, or 0
    without ``gt_labels``); counted = not ignored; matched = the gt box of
    each positive."""
    pos = gt_inds > 0
    labels = torch.full_like(gt_inds, background)
    matched_index = gt_inds[pos] - 1
    labels[pos] = 0 if gt_labels is None else gt_labels[matched_index]
    return labels, gt_inds >= 0, pos, gt_boxes[matched_index]


def graph_zero(tensor: Tensor) -> Tensor:
    """A zero that keeps ``tensor``'s branch in the graph (DDP needs a
    gradient for every parameter, even when a loss has nothing to cover)."""
    return tensor.sum() * 0.0


def regression_loss(loss_fn, pred: Tensor, target: Tensor, avg_factor: float,
                    branch: Tensor) -> Tensor:
    """``loss_fn(pred, target, avg_factor=...)``, or :func:`graph_zero` of the
    regression ``branch`` output when there is nothing to regress."""
    if pred.numel():
        return loss_fn(pred, target, avg_factor=avg_factor)
    return graph_zero(branch)


def decode_detections(level_scores: Sequence[Tensor], level_deltas: Sequence[Tensor],
                      level_priors: Sequence[Tensor], bbox_coder, cfg: dict,
                      img_shape) -> InstanceData:
    """Detections of one image from per-level ``scores`` [n, C], ``deltas``
    [n, 4] and ``priors`` [n, 4]: per level the ``nms_pre`` best (score,
    class) pairs above ``score_thr``, decoded (clipped to ``img_shape``),
    then class-wise NMS (``iou_thr``) keeping ``max_per_img``."""
    all_boxes, all_scores, all_labels = [], [], []
    for scores, deltas, priors in zip(level_scores, level_deltas, level_priors):
        scores, labels, keep = filter_scores_and_topk(scores, cfg["score_thr"], cfg["nms_pre"])
        all_boxes.append(bbox_coder.decode(priors[keep], deltas[keep], max_shape=img_shape))
        all_scores.append(scores)
        all_labels.append(labels)
    boxes, scores, labels = batched_nms_postprocess(
        torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels),
        cfg["iou_thr"], cfg["max_per_img"])
    return InstanceData(bboxes=boxes, scores=scores, labels=labels)


def select_proposals(level_logits: Sequence[Tensor], level_deltas: Sequence[Tensor],
                     level_priors: Sequence[Tensor], bbox_coder, cfg: dict, img_shape,
                     sort_all: bool = True) -> InstanceData:
    """Proposals of one image from per-level objectness ``logits`` [n],
    ``deltas`` [n, 4] and ``priors`` [n, 4]: the ``nms_pre`` best logits of
    each level (``sort_all``: sorted even when a level has fewer), decoded
    (clipped to ``img_shape``), then :func:`proposal_nms` (``min_bbox_size``,
    ``min_score``, per-level NMS at ``iou_thr``, ``max_per_img``)."""
    boxes, scores = [], []
    nms_pre = int(cfg["nms_pre"])
    for logit, delta, prior in zip(level_logits, level_deltas, level_priors):
        if nms_pre > 0 and (sort_all or nms_pre < logit.numel()):
            logit, keep = logit.topk(min(nms_pre, logit.numel()))
            delta, prior = delta[keep], prior[keep]
        boxes.append(bbox_coder.decode(prior, delta, max_shape=img_shape))
        scores.append(logit.sigmoid())
    kept_boxes, kept_scores = proposal_nms(boxes, scores, cfg["min_bbox_size"], cfg["iou_thr"],
                                           cfg["max_per_img"], cfg.get("min_score", 0.0))
    proposals = InstanceData(bboxes=kept_boxes, scores=kept_scores)
    proposals.labels = kept_scores.new_zeros(len(proposals), dtype=torch.long)
    return proposals
