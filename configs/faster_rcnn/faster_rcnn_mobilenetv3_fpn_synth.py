# Faster R-CNN (RPN + RoIAlign box head) on the synthetic shapes, on a CPU:
# MobileNetV3-Small, FPN (strides 8-128). Sizes are scaled to the 256 px
# synthetic images: anchor scale 2 (not 8; objects are 10-128 px) and a
# 256-wide box head (not 1024); everything else is Faster R-CNN's.
#   python tools/train.py configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_synth.py
_base_ = [
    "../_base_/datasets/synthetic_detection.py",
    "../_base_/schedules/quickstart_cpu.py",
    "../_base_/runtime/default_runtime.py",
]
model = dict(
    type="TwoStageDetector",
    backbone=dict(type="MobileNetV3", arch="small", out_indices=(1, 2, 3)),
    neck=dict(type="FPN", out_channels=64, start_level=0, add_extra_convs="on_input",
              num_outs=5),
    rpn_head=dict(
        type="RPNHead",
        feat_channels=64,
        anchor_generator=dict(scales=(2.0,), ratios=(0.5, 1.0, 2.0)),
        assigner=dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
        sampler=dict(num=256, pos_fraction=0.5),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        test_cfg=dict(nms_pre=1000, iou_thr=0.7, max_per_img=1000, min_bbox_size=0),
    ),
    roi_head=dict(
        type="RoIBoxHead",
        num_classes=6,
        roi_size=7,
        fc_channels=256,
        assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5),
        sampler=dict(num=512, pos_fraction=0.25),
        bbox_coder=dict(target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.1, 0.1, 0.2, 0.2)),
        loss_cls=dict(type="CrossEntropyLoss", loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        test_cfg=dict(score_thr=0.05, iou_thr=0.5, max_per_img=100),
    ),
    train_cfg=dict(rpn_proposal=dict(nms_pre=2000, max_per_img=1000)),
)
