# RetinaNet-style detector: MobileNetV3-Small, FPN (P3-P7), shared-conv dense head
# with GroupNorm (trains from scratch quickly on a CPU).
model = dict(
    type="SingleStageDetector",
    backbone=dict(type="MobileNetV3", arch="small", out_indices=(1, 2, 3)),
    neck=dict(type="FPN", out_channels=64, start_level=0, add_extra_convs="on_input",
              num_outs=5),
    bbox_head=dict(
        type="RetinaHead",
        num_classes=6,
        feat_channels=64,
        stacked_convs=2,
        norm_cfg=dict(type="GN", num_groups=16),
        anchor_generator=dict(octave_base_scale=2, scales_per_octave=3, ratios=(0.5, 1.0, 2.0)),
        assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0),
        bbox_coder=dict(target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(1.0, 1.0, 1.0, 1.0)),
        loss_cls=dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
        test_cfg=dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=100),
    ),
)
