"""Boxes, box coders, anchors, assigners: the detection data structures."""
from toolbox.structures.det_data_sample import DetDataSample

__all__ = ["DetDataSample"]
