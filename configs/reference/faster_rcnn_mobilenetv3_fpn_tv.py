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
_base_ = ["../_base_/datasets/coco_reference.py"]

_sizes = (32, 64, 128, 256, 512)
model = dict(
    type="TwoStageDetector",
    backbone=dict(type="MobileNetV3", arch="large", taps="stage_start", out_indices=(4, 5),
                  norm="FrozenBN", frozen_stages=2),  # trainable_backbone_layers=3
    neck=dict(type="FPN", out_channels=256, num_outs=3, add_extra_convs=False),
    rpn_head=dict(
        type="RPNHead",
        feat_channels=256,
        anchor_generator=dict(sizes=(_sizes,) * 3, ratios=(0.5, 1.0, 2.0),
                              round_base_anchors=True, stride_from_input=True),
        assigner=dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.0,
                      match_low_quality=True, low_quality_gt="best"),
        sampler=dict(num=256, pos_fraction=0.5, always_permute=True),
        bbox_coder=dict(dw_clamp="max"),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9, loss_weight=1.0),
        ignore_padding=False,
        test_cfg=dict(nms_pre=1000, iou_thr=0.7, max_per_img=1000, min_bbox_size=1e-3,
                      min_score=0.05),  # rpn_score_thresh=0.05
    ),
    roi_head=dict(
        type="RoIBoxHead",
        num_classes=90,
        roi_size=7,
        sampling_ratio=2,
        aligned=False,
        fc_channels=1024,
        roi_levels=(0,),
        gt_proposals="last",
        assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                      match_low_quality=False),
        sampler=dict(num=512, pos_fraction=0.25, always_permute=True),
        bbox_coder=dict(target_stds=(0.1, 0.1, 0.2, 0.2), dw_clamp="max"),
        loss_cls=dict(type="CrossEntropyLoss", loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9, loss_weight=1.0),
        test_cfg=dict(score_thr=0.05, iou_thr=0.5, max_per_img=100, min_bbox_size=1e-2),
    ),
    train_cfg=dict(rpn_proposal=dict(nms_pre=2000, max_per_img=2000)),
)
test_dataloader = dict(dataset=dict(label_cat_ids=list(range(1, 91))))
val_dataloader = test_dataloader
