# RetinaNet-style detector on VoVNetV2-39 (eSE), on the synthetic shapes.
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(_delete_=True, type="VoVNet", arch="V-39-eSE", out_indices=(1, 2, 3),
                           frozen_stages=-1, norm_eval=False))
