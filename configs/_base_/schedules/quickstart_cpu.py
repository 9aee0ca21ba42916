# A short CPU schedule: AdamW with warm-up and cosine decay, epoch-based.
max_epochs = 10
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=4e-3, weight_decay=0.05),
                     clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
         eta_min_ratio=0.01, convert_to_iter_based=True),
]
# `--auto-scale-lr` scales the learning rate from this total batch
# (world size x batch size x accumulation) to the actual one.
auto_scale_lr = dict(enable=False, base_batch_size=8)
