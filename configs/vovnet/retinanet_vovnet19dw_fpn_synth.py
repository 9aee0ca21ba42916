# RetinaNet-style detector on the light VoVNetV2-19-dw (eSE).
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(_delete_=True, type="VoVNet", arch="V-19-dw-eSE", out_indices=(1, 2, 3)))
