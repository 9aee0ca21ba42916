# RetinaNet-style detector on SpineNet-49S: the backbone already outputs P3-P7
# (its own cross-scale fusion replaces the FPN), as in the SpineNet paper.
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(_delete_=True, type="SpineNet", arch="49S"), neck=None,
             bbox_head=dict(feat_channels=128))
# SpineNet needs inputs padded to a multiple of 128.
train_dataloader = dict(collate_fn=dict(size_divisor=128))
val_dataloader = dict(collate_fn=dict(size_divisor=128))
test_dataloader = dict(collate_fn=dict(size_divisor=128))
