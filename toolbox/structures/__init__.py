"""Boxes, box coders, anchors, assigners: the detection data structures."""
from toolbox.structures.anchor_generator import AnchorGenerator
from toolbox.structures.delta_coder import DeltaXYWHBBoxCoder, clip_boxes
from toolbox.structures.det_data_sample import DetDataSample
from toolbox.structures.max_iou_assigner import AssignResult, MaxIoUAssigner, box_iof
from toolbox.structures.nms import batched_nms_postprocess, filter_scores_and_topk

__all__ = [
    "AnchorGenerator", "AssignResult", "DeltaXYWHBBoxCoder", "DetDataSample",
    "MaxIoUAssigner", "batched_nms_postprocess", "box_iof", "clip_boxes",
    "filter_scores_and_topk",
]
