# RetinaNet-style detector: MobileNetV3-Small, FPN (P3-P7), shared-conv dense head
# with GroupNorm (trains from scratch quickly on a CPU).
model = dict(
    type="SingleStageDetector",
    # uint8 images in; normalised (ImageNet RGB mean/std) and padded on the device
    data_preprocessor=dict(type="DetDataPreprocessor", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                           pad_size_divisor=32),
    backbone=dict(type="MobileNetV3", arch="small", out_indices=(1, 2, 3)),
    neck=dict(type="FPN", out_channels=64, start_level=0, add_extra_convs="on_input",
              num_outs=5),
    bbox_head=dict(
        type="RetinaHead",
        num_classes=6,
        feat_channels=64,
        stacked_convs=2,
        norm_cfg=dict(type="GN", num_groups=16),
        # smaller anchors for the small images; every other sub-config is
        # RetinaHead's default (assigner 0.5 / 0.4 with ignore_iof_thr 0.5,
        # FocalLoss, test_cfg), see docs/heads.md
        anchor_generator=dict(octave_base_scale=2),
        loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
    ),
)
