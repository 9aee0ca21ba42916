# RetinaNet-style detector on SpineNet-49S: the backbone already outputs P3-P7
# (its own cross-scale fusion replaces the FPN), as in the SpineNet paper.
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
# SpineNet needs inputs padded to a multiple of 128 (its size_divisor; the
# data preprocessor pads to it).
model = dict(backbone=dict(_delete_=True, type="SpineNet", arch="49S"), neck=None,
             bbox_head=dict(feat_channels=128),
             data_preprocessor=dict(pad_size_divisor=128))
