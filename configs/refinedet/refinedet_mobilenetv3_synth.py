# RefineDet (ARM + TCB + ODM) on MobileNetV3-Small, sized to train on a CPU:
# four levels at strides 4-32 (the 16/24/48/576-channel maps; TCBs map them to
# 64 channels, with GroupNorm to train from scratch quickly), the paper's
# anchors (4x the stride: 16-128 px, which covers the synthetic 10-128 px
# shapes), 3:1 hard negative mining, Smooth L1, theta = 0.99.
#   python tools/train.py configs/refinedet/refinedet_mobilenetv3_synth.py
_base_ = [
    "../_base_/datasets/synthetic_detection.py",
    "../_base_/schedules/quickstart_cpu.py",
    "../_base_/runtime/default_runtime.py",
]
model = dict(
    type="SingleStageDetector",
    backbone=dict(type="MobileNetV3", arch="small", out_indices=(0, 1, 2, 3)),
    bbox_head=dict(
        type="RefineDetHead",
        num_classes=6,
        feat_channels=64,
        use_arm=True,
        neg_anchor_thr=0.99,
        neg_pos_ratio=3.0,
        norm_cfg=dict(type="GN", num_groups=16),
        anchor_generator=dict(ratios=(0.5, 1.0, 2.0), scales=(4.0,), center_offset=0.5),
        bbox_coder=dict(target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.1, 0.1, 0.2, 0.2)),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        test_cfg=dict(nms_pre=1000, score_thr=0.01, iou_thr=0.45, max_per_img=100),
    ),
)
