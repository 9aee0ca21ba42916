# The embedded synthetic 2D segmentation data (generated on first use, offline):
# the synthetic shapes images with their per-pixel class PNGs
# (0 = background, k + 1 = shape k; 7 classes).
dataset_type = "SyntheticSegDataset"
image_size = 128
num_classes = 7
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadSegAnnotation"),
    dict(type="RandomCrop", area_range=(0.5, 1.0)),
    dict(type="Resize", scale=(image_size, image_size), keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="ColorJitter", brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadSegAnnotation"),
    dict(type="Resize", scale=(image_size, image_size), keep_ratio=True),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="toolbox.seg_collate"),
    dataset=dict(type=dataset_type, split="train", image_size=image_size,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="toolbox.seg_collate"),
    dataset=dict(type=dataset_type, split="val", image_size=image_size, test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type="SegMetric")
test_evaluator = val_evaluator
