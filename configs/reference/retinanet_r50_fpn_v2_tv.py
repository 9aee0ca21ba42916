# torchvision's `retinanet_resnet50_fpn_v2` (improved RetinaNet, ResNet-50-FPN, COCO_V1 weights:
# box AP 41.5 on COCO val2017 as published by torchvision), built from the toolbox's own
# components. Loaded with converted weights it is the same model, checked by equivalence tests
# (tests/reference/test_retinanet_tv.py), not by a COCO run here:
#   python tools/convert_weights.py retinanet_resnet50_fpn_v2_coco-5905b1c5.pth retinanet_v2_tv.pth
#   python tools/test.py configs/reference/retinanet_r50_fpn_v2_tv.py retinanet_v2_tv.pth
# Differences from v1 (retinanet_r50_fpn_tv.py): a BatchNorm ResNet-50 (torchvision builds v2
# with plain BatchNorm2d; its stem and layer1 get no gradients but their BatchNorms follow the
# model's train/eval mode), P6 from C5 (`LastLevelP6P7(2048, 256)`), GroupNorm(32) head towers
# without conv biases, and the GIoU box loss on decoded boxes.
_base_ = ["./retinanet_r50_fpn_tv.py"]

model = dict(
    backbone=dict(_delete_=True, type="ResNet", depth=50, out_indices=(1, 2, 3), frozen_stages=1,
                  norm="BN", frozen_stages_eval=False),
    neck=dict(add_extra_convs="on_input"),
    bbox_head=dict(norm_cfg=dict(type="GN", num_groups=32), loss_bbox=dict(type="GIoULoss")))
