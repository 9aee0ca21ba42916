"""Post-processing of dense detections: score filter, top-k, class-wise NMS.

A dense head calls :func:`filter_scores_and_topk` on each level (so only
the best candidates are decoded), concatenates the levels, and calls
:func:`batched_nms_postprocess` once per image.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms


def filter_scores_and_topk(scores: Tensor, score_thr: float, topk: int
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """Keep (prior, class) pairs scoring above ``score_thr``, at most ``topk``.

    Args:
        scores: [N, C] per-class scores of N priors (sigmoid: several classes
            of one prior may survive).
        score_thr: keep scores strictly greater than this.
        topk: keep the ``topk`` best pairs (``<= 0``: keep all).

    Returns:
        ``(scores [K], labels [K], prior_inds [K])``, sorted by score.
    """
    if scores.dim() != 2:
        raise ValueError(f"filter_scores_and_topk: 'scores' must be [N, C], "
                         f"got {tuple(scores.shape)}")
    num_classes = scores.shape[1]
    flat = scores.reshape(-1)
    keep = torch.nonzero(flat > score_thr).squeeze(1)
    flat = flat[keep]
    k = flat.numel() if topk is None or topk <= 0 else min(int(topk), flat.numel())
    flat, order = flat.topk(k)  # sorted; cheaper than sorting every candidate
    keep = keep[order]
    return flat, keep % num_classes, torch.div(keep, num_classes, rounding_mode="floor")


def batched_nms_postprocess(bboxes: Tensor, scores: Tensor, labels: Tensor,
                            iou_thr: float, max_per_img: int = 100,
                            class_agnostic: bool = False
                            ) -> tuple[Tensor, Tensor, Tensor]:
    """Class-wise NMS (torchvision ``batched_nms``) then the ``max_per_img``
    best detections.

    Args:
        bboxes: [K, 4] x1 y1 x2 y2. scores: [K]. labels: [K] long.
        iou_thr: boxes of one class overlapping a better one by more are dropped.
        max_per_img: detections kept in the end (``<= 0``: all).
        class_agnostic: suppress across classes too.

    Returns:
        ``(bboxes, scores, labels)`` sorted by decreasing score.
    """
    if bboxes.dim() != 2 or bboxes.shape[-1] != 4:
        raise ValueError(f"batched_nms_postprocess: 'bboxes' must be [K, 4], "
                         f"got {tuple(bboxes.shape)}")
    if not (scores.shape[0] == labels.shape[0] == bboxes.shape[0]):
        raise ValueError("batched_nms_postprocess: 'bboxes', 'scores' and 'labels' must have "
                         f"the same length, got {bboxes.shape[0]}, {scores.shape[0]}, "
                         f"{labels.shape[0]}")
    if bboxes.numel() == 0:
        return bboxes, scores, labels
    idxs = torch.zeros_like(labels) if class_agnostic else labels
    keep = batched_nms(bboxes.float(), scores.float(), idxs, float(iou_thr))
    if max_per_img is not None and max_per_img > 0:
        keep = keep[:max_per_img]
    return bboxes[keep], scores[keep], labels[keep]


def proposal_nms(boxes: list[Tensor], scores: list[Tensor], min_bbox_size: float,
                 iou_thr: float, max_per_img: int, score_thr: float = 0.0
                 ) -> tuple[Tensor, Tensor]:
    """RPN post-processing of one image's per-level candidates: drop boxes
    not wider and taller than ``min_bbox_size``, then those scoring below
    ``score_thr`` (torchvision's ``rpn_score_thresh``), NMS within each
    pyramid level, keep the ``max_per_img`` best (all when <= 0). Returns
    ``(boxes [K, 4], scores [K])``."""
    levels = torch.cat([torch.full_like(s, i, dtype=torch.long) for i, s in enumerate(scores)])
    boxes, scores = torch.cat(boxes), torch.cat(scores)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    large = (widths > min_bbox_size) & (heights > min_bbox_size)
    boxes, scores, levels = boxes[large], scores[large], levels[large]
    if score_thr > 0:
        confident = scores >= score_thr
        boxes, scores, levels = boxes[confident], scores[confident], levels[confident]
    if boxes.numel():
        keep = batched_nms(boxes.float(), scores.float(), levels, float(iou_thr))
        if max_per_img > 0:
            keep = keep[:int(max_per_img)]
        boxes, scores = boxes[keep], scores[keep]
    return boxes, scores
