# RetinaNet-style detector on ResNet-18 (C3-C5 into the FPN).
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(_delete_=True, type="ResNet", depth=18, out_indices=(1, 2, 3)))
