# A small UNETR trained on the embedded synthetic CT-like volumes (64^3, 5
# classes), 32^3 patches, evaluated by sliding window (Dice, IoU, HD95):
#   python tools/train.py configs/unetr/unetr_3d_synth.py
_base_ = [
    "../_base_/models/unetr_small.py",
    "../_base_/datasets/synthetic_volume3d.py",
    "../_base_/runtime/default_runtime.py",
]
# 48 epochs x 12 iterations (24 volumes, batch 2) = 576 iterations, ~15-18 min
# on 2 shared CPU cores (see benchmarks/results_unetr_cpu.md).
max_epochs = 48
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-3, weight_decay=1e-5),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min_ratio=0.05, convert_to_iter_based=True),
]
default_hooks = dict(logger=dict(type="LoggerHook", interval=10),
                     checkpoint=dict(type="CheckpointHook", interval=max_epochs, max_keep_ckpts=1))
