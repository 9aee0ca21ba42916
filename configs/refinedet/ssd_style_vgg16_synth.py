# The paper's one-step ablation of RefineDet320-VGG16 (refinedet320_vgg16_synth.py):
# use_arm=False drops the ARM, so the ODM regresses and classifies the plain
# anchors (no refinement, no negative anchor filtering) on the TCB features.
_base_ = ["./refinedet320_vgg16_synth.py"]
model = dict(bbox_head=dict(use_arm=False))
