# The embedded synthetic detection data (generated on first use, offline):
# coloured shapes on textured backgrounds, COCO JSON + VOC XML of the same images.
# The pipelines pack uint8 images; the model's data_preprocessor normalises and
# pads them on its device.
dataset_type = "SyntheticCocoDataset"
image_size = 256
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
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="toolbox.det_collate"),
    dataset=dict(type=dataset_type, split="train", image_size=image_size,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="toolbox.det_collate"),
    dataset=dict(type=dataset_type, split="val", image_size=image_size, test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type="CocoMetric", classwise=True), dict(type="VOCMetric", eval_mode="area")]
test_evaluator = val_evaluator
