# DETR as in the paper (Carion et al. 2020): ResNet-50 C5 (FrozenBN, stem and
# layer1 frozen, as the official code), a 6 + 6 layer post-norm transformer of
# width 256 with 8 heads and FFN 2048, 100 object queries, Hungarian loss
# CE (no-object weight 0.1) + 5 L1 + 2 GIoU at every decoder layer.
# Optimiser as the paper: AdamW lr 1e-4 (backbone 1e-5), weight decay 1e-4,
# gradient clipping at 0.1. The paper trains 500 epochs from an ImageNet
# backbone (lr / 10 at epoch 400): load one with `load_from` or the
# backbone's load_reference; no weights are downloaded here.
#   python tools/train.py configs/detr/detr_r50_synth.py
_base_ = [
    "../_base_/datasets/synthetic_detection.py",
    "../_base_/runtime/default_runtime.py",
]
model = dict(
    type="DETR",
    # uint8 images in; normalised (ImageNet RGB mean/std) and padded on the device
    data_preprocessor=dict(type="DetDataPreprocessor", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                           pad_size_divisor=32),
    backbone=dict(type="ResNet", depth=50, out_indices=(3,), norm="FrozenBN", frozen_stages=1),
    bbox_head=dict(
        type="DETRHead",
        num_classes=6,
        embed_dims=256,
        num_queries=100,
        transformer=dict(nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                         dim_feedforward=2048, dropout=0.1),
        # everything else: DETR's values, DETRHead's defaults (sine positional encoding,
        # matcher costs 1 / 5 / 2, CE 1 + L1 5 + GIoU 2, eos_coef 0.1, aux losses,
        # 100 detections per image; docs/heads.md)
    ),
)
max_epochs = 500
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=50)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}))
param_scheduler = [dict(type="MultiStepLR", by_epoch=True, milestones=[400], gamma=0.1)]
train_dataloader = dict(batch_size=2)
