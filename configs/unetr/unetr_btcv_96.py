# UNETR at the paper's size for BTCV (13 organs + background, 96^3 CT
# patches, sliding-window inference). Builds offline; the BTCV volumes are
# not shipped: point a VolumeDataset at them to train. Schedule as the paper:
# AdamW lr 1e-4, weight decay 1e-5, 20k iterations (batch 6 there; here 1).
_base_ = ["../_base_/models/unetr_vit_b16.py", "../_base_/runtime/default_runtime.py"]
max_iters = 20000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=500)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(type="OptimWrapper",
                     optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-5))
