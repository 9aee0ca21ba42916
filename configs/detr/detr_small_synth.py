# A CPU-sized DETR for the synthetic shapes: MobileNetV3-Small C5 (trained
# from scratch, so no backbone lr multiplier), a 2 + 2 layer transformer of
# width 128 (4 heads, FFN 512, no dropout), 20 queries (images hold at most 8
# shapes), 192 px images, and a 10x higher learning rate than the paper's.
# DETR converges slowly: see docs/detr.md for what this recipe reaches on a
# CPU budget next to the RetinaNet quickstart.
#   python tools/train.py configs/detr/detr_small_synth.py
_base_ = ["./detr_r50_synth.py"]
image_size = 192
model = dict(
    backbone=dict(_delete_=True, type="MobileNetV3", arch="small", out_indices=(3,)),
    bbox_head=dict(
        embed_dims=128,
        num_queries=20,
        transformer=dict(nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                         dim_feedforward=512, dropout=0.0),
    ),
)
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(image_size, image_size), keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, prob=0.5),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(image_size, image_size), keep_ratio=True),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
max_epochs = 12
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=1.0)}))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min_ratio=0.01, convert_to_iter_based=True),
]
