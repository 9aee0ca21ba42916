# DETR-small whose backbone starts from a detector trained on the same
# synthetic *training* split: the CPU stand-in for the paper's ImageNet
# backbone (nothing can be downloaded here). Two steps:
#   1. python tools/train.py configs/quickstart/retinanet_mobilenetv3_fpn_synth.py \
#          --cfg-options train_cfg.max_epochs=3
#   2. python tools/train.py configs/detr/detr_small_pretrained_backbone_synth.py \
#          --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/retinanet_mobilenetv3_fpn_synth/epoch_3.pth
# Only the `backbone.` weights of the checkpoint are loaded (mmengine
# 'Pretrained' init with that prefix; the stride-32 stage, not built here, is
# ignored). The checkpoint must be given: init_weights fails without it (the
# model itself builds, e.g. in tests, with random weights). The backbone then
# trains at 0.2x the transformer's learning rate. Measured numbers: docs/detr.md.
_base_ = ["./detr_small_synth.py"]
model = dict(
    backbone=dict(init_cfg=dict(type="Pretrained", checkpoint=None, prefix="backbone.")),
)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.2)}))
