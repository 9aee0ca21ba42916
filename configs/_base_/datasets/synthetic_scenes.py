# The second embedded synthetic detection set, the one the recipes were NOT
# tuned on (generated on first use, offline): ellipses, rings, arrows,
# crescents and kites in non-square images of varying size (longest side up
# to 400 px), crowded scenes, distractors and a few iscrowd clusters; COCO
# JSON + VOC XML of the same images (see toolbox/datasets/scenes_gen.py).
# Everything else - pipelines (Resize to 256), loaders, evaluators - is the
# shapes base's, so a recipe swaps this base in for synthetic_detection.py and
# sets num_classes=5:
#   _base_ = [..., "../_base_/datasets/synthetic_scenes.py", ...]
_base_ = ["./synthetic_detection.py"]
scenes_image_size = 400  # the longest side's upper bound, not the network input size
train_dataloader = dict(dataset=dict(generator="scenes", image_size=scenes_image_size))
val_dataloader = dict(dataset=dict(generator="scenes", image_size=scenes_image_size))
test_dataloader = dict(dataset=dict(generator="scenes", image_size=scenes_image_size))
