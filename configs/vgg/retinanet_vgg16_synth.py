# RetinaNet-style head on RefineDet's VGG16 (conv4_3, conv5_3, fc7, conv6_2 at
# strides 8-64), through an FPN that equalises their widths.
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(_delete_=True, type="VGG", depth=16),
             neck=dict(_delete_=True, type="FPN", out_channels=64, num_outs=4))
