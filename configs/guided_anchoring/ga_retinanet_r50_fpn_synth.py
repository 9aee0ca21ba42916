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
        # everything else: the paper's values (256-wide towers of 4 convs, sigma 8,
        # RetinaNet's approxs, smooth L1 beta 0.04), GARetinaHead's defaults
    ),
)
