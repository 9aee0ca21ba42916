# RetinaNet-style detector on ResNet-50 with frozen BN statistics (C3-C5 into the FPN).
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(_delete_=True, type="ResNet", depth=50, out_indices=(1, 2, 3),
                           frozen_stages=1, norm_eval=True))
