# The embedded synthetic 3D segmentation data (generated on first use, offline):
# CT-like noisy volumes (HU) with liver, spleen, kidneys and liver tumours
# (5 classes with background, strongly imbalanced). Training samples one
# roi_size patch per volume, centred on a voxel of a class drawn with equal
# ratios among the classes present (MONAI's RandCropByLabelClasses), so the
# small organs appear in the patches as often as the liver; validation gives
# whole volumes (the model predicts them by sliding window).
dataset_type = "SyntheticVolumeDataset"
volume_size = 64
roi_size = (32, 32, 32)
num_classes = 5
intensity = dict(type="ScaleIntensity", a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True)
train_pipeline = [
    dict(type="LoadVolume"),
    intensity,
    dict(type="RandomCropVolume", roi_size=roi_size, class_ratios=(1,) * num_classes),
    dict(type="RandomFlipVolume", prob=0.1, axes=(0, 1, 2)),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadVolume"),
    intensity,
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=2, num_workers=2, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="toolbox.seg_collate"),
    dataset=dict(type=dataset_type, split="train", size=volume_size, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="toolbox.seg_collate"),
    dataset=dict(type=dataset_type, split="val", size=volume_size, test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="SegMetric", include_background=False, hd95=True)
test_evaluator = val_evaluator
