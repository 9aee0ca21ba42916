# The quickstart detector with ASFF fusing the FPN's P3-P5 (necks chain in order).
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(neck=[dict(type="FPN", out_channels=64, num_outs=3),
                   dict(type="ASFF", out_channels=64)])
