# The quickstart detector with MobileNetV3-Large (2.3x slower per step on a CPU).
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(arch="large"))
