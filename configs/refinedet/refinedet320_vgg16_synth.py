# RefineDet320-VGG16 (Zhang et al., CVPR 2018) as in the paper: SSD's atrous
# VGG16 with RefineDet's pool5/fc6/fc7/conv6 (conv4_3, conv5_3, fc7, conv6_2 at
# strides 8-64, L2Norm 10/8), 256-wide TCBs, 3 anchors per cell of 4x the
# stride, theta = 0.99, 3:1 hard negative mining, 320 x 320 input, trained on
# the synthetic shapes (generated at 320 px here, so nothing is upsampled).
# The paper trains with SGD (lr 1e-3, momentum 0.9, batch 32) from ImageNet
# VGG16 weights; without downloads this starts from scratch with the
# quickstart's AdamW schedule.
# CPU cost, measured on the 2 shared cores of the dev machine: one training step
# of a batch of 2 at 320 px takes 18-44 s (the inference forward ~3 s per
# image), i.e. hours per synthetic epoch. The input is kept at the paper's 320
# (not scaled down) so the config is RefineDet320 itself, for a GPU or real
# data; refinedet_mobilenetv3_synth.py is the CPU-sized recipe.
_base_ = [
    "../_base_/datasets/synthetic_detection.py",
    "../_base_/schedules/quickstart_cpu.py",
    "../_base_/runtime/default_runtime.py",
]
image_size = 320
model = dict(
    type="SingleStageDetector",
    # uint8 images in; normalised (ImageNet RGB mean/std) and padded on the device
    data_preprocessor=dict(type="DetDataPreprocessor", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                           pad_size_divisor=64),
    backbone=dict(type="VGG", depth=16, out_indices=(0, 1, 2, 3), l2_norm_scales=(10.0, 8.0)),
    bbox_head=dict(
        type="RefineDetHead",
        num_classes=6,
        strides=(8, 16, 32, 64),
        # everything else: the paper's values, RefineDetHead's defaults (docs/heads.md)
    ),
)
_resize = dict(type="Resize", scale=(image_size, image_size), keep_ratio=True)
train_dataloader = dict(dataset=dict(
    image_size=image_size,
    pipeline=[
        dict(type="LoadImage"), _resize,
        dict(type="RandomFlip", prob=0.5),
        dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, prob=0.5),
        dict(type="PackDetInputs"),
    ]))
val_dataloader = dict(dataset=dict(
    image_size=image_size,
    pipeline=[dict(type="LoadImage"), _resize, dict(type="PackDetInputs")]))
test_dataloader = val_dataloader
