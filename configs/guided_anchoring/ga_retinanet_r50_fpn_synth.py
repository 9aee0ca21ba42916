# GA-RetinaNet R50-FPN as in the paper: ResNet-50 (C3-C5, frozen stem and
# BN statistics), FPN P3-P7 of width 256, GA-RetinaNet head with 4-conv
# towers of width 256, sigma 8, RetinaNet's 9 approxs (octave_base_scale 4),
# focal + bounded IoU anchor losses, focal + smooth L1 (beta 0.04) detection
# losses. num_classes follows the synthetic data (80 on COCO). Builds and
# trains here, but is meant for a GPU and ImageNet-pretrained weights.
_base_ = ["./ga_retinanet_mobilenetv3_fpn_synth.py"]
model = dict(
    backbone=dict(_delete_=True, type="ResNet", depth=50, out_indices=(1, 2, 3),
                  frozen_stages=1, norm_eval=True),
    neck=dict(out_channels=256),
    bbox_head=dict(
        _delete_=True,
        type="GARetinaHead",
        num_classes=6,
        feat_channels=256,
        stacked_convs=4,
        sigma=8.0,
        approx_anchor_generator=dict(octave_base_scale=4, scales_per_octave=3,
                                     ratios=(0.5, 1.0, 2.0)),
        center_ratio=0.2,
        ignore_ratio=0.5,
        shape_assigner=dict(pos_iou_thr=0.5, min_pos_iou=0.4),
        loc_filter_thr=0.01,
        assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0, ignore_iof_thr=0.5),
        loss_loc=dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_shape=dict(type="BoundedIoULoss", beta=0.2, loss_weight=1.0),
        loss_cls=dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=0.04, loss_weight=1.0),
    ),
)
