# The quickstart detector with MobileNetV3-Small.
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(arch="small"))
