# UNETR for 2D images (16^2 patches) trained on the embedded synthetic shapes
# with their per-pixel class maps (7 classes), 128^2 inputs, mIoU / Dice:
#   python tools/train.py configs/unetr/unetr_2d_synth.py
_base_ = [
    "../_base_/models/unetr_small.py",
    "../_base_/datasets/synthetic_seg2d.py",
    "../_base_/runtime/default_runtime.py",
]
img_size = 128
model = dict(
    # uint8 RGB images in; normalised (ImageNet mean/std) on the device
    data_preprocessor=dict(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)),
    backbone=dict(in_channels=3, img_size=img_size, spatial_dims=2, hidden_size=192,
                  num_layers=6, num_heads=6, mlp_dim=768, out_indices=(1, 2, 4, 5)),
    decode_head=dict(num_classes=7),
    # Windows of the training size; whole-image inputs of that size are one window.
    test_cfg=dict(mode="slide", roi_size=(img_size, img_size), overlap=0.25, sw_batch_size=4),
)
max_epochs = 10
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-5),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min_ratio=0.05, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(type="LoggerHook", interval=10),
                     checkpoint=dict(type="CheckpointHook", interval=max_epochs, max_keep_ckpts=1))
