# COCO val2017 evaluation as the reference detectors (torchvision, DETR) are
# evaluated: the image resized by torchvision's rule (shorter side 800, longer
# at most 1333, float32 bilinear, not rounded), ImageNet mean/std, padded to a
# multiple of 32 (by the model's data_preprocessor, which does not normalise
# again), one image per batch; boxes mapped back to the original image.
# Point `data_root` at a COCO 2017 directory:
#   data/coco/annotations/instances_val2017.json, data/coco/val2017/*.jpg
# A reference config sets `test_dataloader.dataset.label_cat_ids`, the COCO
# category id of each of its model's labels, so the results JSON is right.
default_scope = "toolbox"
data_root = "data/coco/"
# Normalise first, then resize, with torchvision's arithmetic (0..1 pixels),
# so that the network sees torchvision's input bit for bit.
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Normalize", scale=255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True, backend="torch"),
    dict(type="PackDetInputs"),
]
test_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="toolbox.det_collate"),
    dataset=dict(type="CocoDataset", data_root=data_root,
                 ann_file="annotations/instances_val2017.json",
                 data_prefix=dict(img="val2017/"), test_mode=True,
                 label_cat_ids=list(range(91)), pipeline=test_pipeline))
test_evaluator = dict(type="CocoMetric", ann_file=data_root + "annotations/instances_val2017.json",
                      classwise=False)
test_cfg = dict(type="TestLoop")
val_dataloader = test_dataloader
val_evaluator = test_evaluator
val_cfg = dict(type="ValLoop")
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="gloo"))
default_hooks = dict(timer=dict(type="IterTimerHook"), logger=dict(type="LoggerHook", interval=50))
custom_hooks = [dict(type="ProgressBarHook")]
log_level = "INFO"
load_from = None
resume = False
