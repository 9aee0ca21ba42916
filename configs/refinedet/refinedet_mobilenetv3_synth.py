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
    # uint8 images in; normalised (ImageNet RGB mean/std) and padded on the device
    data_preprocessor=dict(type="DetDataPreprocessor", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                           pad_size_divisor=32),
    backbone=dict(type="MobileNetV3", arch="small", out_indices=(0, 1, 2, 3)),
    bbox_head=dict(
        type="RefineDetHead",
        num_classes=6,
        feat_channels=64,
        norm_cfg=dict(type="GN", num_groups=16),
        # Not the paper (0: the ARM's predictors on the backbone maps): one shared
        # 3x3 conv-GN-ReLU of 64 channels under the ARM on each level, because
        # MobileNetV3-S's stage outputs (16 channels at stride 4) are too narrow
        # and shallow to refine anchors from: AP 0.574 -> 0.701, above the
        # SSD-style ablation's 0.684 (docs/refinedet.md).
        arm_stacked_convs=1,
        # everything else: the paper's values, RefineDetHead's defaults (docs/heads.md)
    ),
)
