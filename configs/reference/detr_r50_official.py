# DETR-R50 as its authors released it (Carion et al. 2020; facebookresearch/detr
# `detr_resnet50`, 500 epochs): published COCO val2017 box AP 42.0.
# ResNet-50 (FrozenBN, C5) -> 1x1 conv to 256 -> 6 + 6 post-norm transformer
# (8 heads, FFN 2048, sine positions normalised, added to queries and keys
# only) -> 100 queries -> 91 classes + "no object" and a 3-layer box MLP.
# Labels are COCO category ids (0..90, ids COCO does not use are "N/A"),
# so `label_cat_ids=list(range(91))`; the last logit is "no object".
# Equivalence with HF transformers' DetrForObjectDetection (the same model)
# is checked in tests/reference/test_detr_official.py; no COCO run was made here.
#
# Bring the authors' checkpoint (or HF's `facebook/detr-resnet-50` state dict):
#   python tools/convert_weights.py detr-r50-e632da11.pth work_dirs/detr_r50.pth
#       (--format detr-official; an HF state dict is --format detr-hf)
#   python tools/test.py configs/reference/detr_r50_official.py work_dirs/detr_r50.pth
#
# Pre-processing as the official evaluation: shorter side 800, longer at most
# 1333, ImageNet mean/std, images padded (zeros after normalising) only to the
# largest image of the batch, with a padding mask (no size divisor). The
# size follows the official rule (`size_rule="detr"`: long side
# int(800 * long / short), a 640 x 480 image becomes 1066 x 800); the
# official interpolation is PIL's bilinear (with antialiasing), this one
# cv2's, so pixels differ slightly.
# The official evaluation runs 2 images per batch (README: `--batch_size 2`),
# and DETR's outputs depend on the batch's padding, so this does too.
# Post-processing as the official `PostProcess`: softmax, no-object dropped,
# each query's best class and score, all 100 queries kept, boxes scaled to the
# original image and not clipped.
_base_ = ["../_base_/datasets/coco_reference.py"]

model = dict(
    type="DETR",
    pad_size_divisor=1,
    # the pipeline normalises: pad only, to the largest image of the batch
    data_preprocessor=dict(type="DetDataPreprocessor", mean=None, std=None, pad_size_divisor=1),
    backbone=dict(type="ResNet", depth=50, out_indices=(3,), norm="FrozenBN", frozen_stages=1),
    bbox_head=dict(
        type="DETRHead",
        num_classes=91,
        embed_dims=256,
        num_queries=100,
        transformer=dict(nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                         dim_feedforward=2048, dropout=0.1),
        positional_encoding=dict(type="sine", normalize=True),
        padding_mask="nearest",
        matcher=dict(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0),
        loss_cls=dict(type="CrossEntropyLoss", loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=5.0),
        loss_iou=dict(type="GIoULoss", loss_weight=2.0),
        eos_coef=0.1,
        aux_loss=True,
        test_cfg=dict(max_per_img=100, one_label_per_query=True, clip_boxes=False),
    ),
)
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True, size_rule="detr"),
    dict(type="Normalize", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)),
    dict(type="PackDetInputs"),
]
test_dataloader = dict(
    batch_size=2,
    dataset=dict(label_cat_ids=list(range(91)), pipeline=test_pipeline))
val_dataloader = test_dataloader
