"""Boxes, box coders, anchors, assigners and the per-sample records of detection
and segmentation."""
from toolbox.structures.anchor_generator import AnchorGenerator
from toolbox.structures.box_mapping import boxes_to_original
from toolbox.structures.delta_coder import DeltaXYWHBBoxCoder, clip_boxes
from toolbox.structures.det_data_sample import DetDataSample
from toolbox.structures.feature_spec import FeatureSpec
from toolbox.structures.max_iou_assigner import AssignResult, MaxIoUAssigner, box_iof
from toolbox.structures.nms import batched_nms_postprocess, filter_scores_and_topk
from toolbox.structures.seg_data_sample import IGNORE_INDEX, SegDataSample

__all__ = [
    "AnchorGenerator", "AssignResult", "DeltaXYWHBBoxCoder", "DetDataSample", "FeatureSpec", "IGNORE_INDEX",
    "MaxIoUAssigner", "batched_nms_postprocess", "box_iof", "boxes_to_original", "clip_boxes",
    "filter_scores_and_topk", "SegDataSample",
]
