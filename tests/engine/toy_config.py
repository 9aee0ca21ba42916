custom_imports = dict(imports=["toy_components"], allow_failed_imports=False)
default_scope = "toolbox"
model = dict(type="ToyRegressor", hidden=8)
train_dataloader = dict(dataset=dict(type="ToyDataset", size=32), batch_size=4, num_workers=0,
                        sampler=dict(type="DefaultSampler", shuffle=True),
                        collate_fn=dict(type="default_collate"))
train_cfg = dict(by_epoch=True, max_epochs=3)
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9))
param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=4),
                   dict(type="MultiStepLR", milestones=[2], by_epoch=True)]
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1),
                     logger=dict(type="LoggerHook", interval=4))
randomness = dict(seed=0)
log_level = "WARNING"
