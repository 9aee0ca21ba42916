# Faster R-CNN MobileNetV3-Large FPN = torchvision's
# `fasterrcnn_mobilenet_v3_large_fpn`, built from the toolbox's own components:
# MobileNetV3-Large with FrozenBN (eps 1e-5) returning what torchvision's
# detection extractor returns (the first stride-32 block, features[13], and the
# final conv, features[16]), FPN on both + a max-pooled level (strides 32, 32,
# 64), RPN with anchors 32..512 x ratios 0.5/1/2 (15 per cell) on every level and
# objectness threshold 0.05, RoIAlign 7x7 from the first FPN level only (both
# are 1/32, so torchvision's level mapper sends every RoI there), two 1024-wide
# fcs, per-class deltas (weights 10, 10, 5, 5). Published COCO val2017 box AP:
# 32.8. Checked by equivalence with torchvision
# (tests/reference/test_faster_rcnn_tv.py), not by a COCO run. torchvision's
# label j (1..90) is label j - 1 here; label_cat_ids maps it to the COCO id.
#   python tools/convert_weights.py fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth \
#       faster_rcnn_mobilenetv3_fpn_tv.pth --format tv-faster-rcnn-mobilenet
#   python tools/test.py configs/reference/faster_rcnn_mobilenetv3_fpn_tv.py \
#       faster_rcnn_mobilenetv3_fpn_tv.pth
# Everything else is faster_rcnn_r50_fpn_tv.py's.
_base_ = ["./faster_rcnn_r50_fpn_tv.py"]

model = dict(
    backbone=dict(_delete_=True, type="MobileNetV3", arch="large", taps="stage_start",
                  out_indices=(4, 5), norm="FrozenBN", frozen_stages=2),  # 3 trainable layers
    neck=dict(num_outs=3),
    rpn_head=dict(
        anchor_generator=dict(sizes=((32, 64, 128, 256, 512),) * 3),
        test_cfg=dict(min_score=0.05)),  # rpn_score_thresh=0.05
    roi_head=dict(roi_levels=(0,)),
)
