"""The toy run of tests/engine/toy_config.py, plus validation and test sets
(for the bad-input, NaN and kill/resume tests)."""
_base_ = ["toy_config.py"]
custom_imports = dict(imports=["toy_components", "bad_input_toys"], allow_failed_imports=False)
_eval_loader = dict(dataset=dict(type="ToyDataset", size=8, seed=1), batch_size=4, num_workers=0,
                    sampler=dict(type="DefaultSampler", shuffle=False),
                    collate_fn=dict(type="default_collate"))
val_dataloader = _eval_loader
test_dataloader = _eval_loader
val_evaluator = dict(type="TensorMSE")
test_evaluator = dict(type="TensorMSE")
val_cfg = dict()
test_cfg = dict()
train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=1)
