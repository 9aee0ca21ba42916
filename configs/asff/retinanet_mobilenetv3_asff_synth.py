# ASFF straight on the backbone's C3-C5 (unequal widths), no FPN.
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(neck=dict(_delete_=True, type="ASFF", out_channels=64))
