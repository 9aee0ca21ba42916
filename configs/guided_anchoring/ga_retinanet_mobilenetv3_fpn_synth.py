# GA-RetinaNet (Wang et al., "Region Proposal by Guided Anchoring"): the
# quickstart's MobileNetV3-Small + FPN (P3-P7), with RetinaNet's 9 fixed
# anchors per cell replaced by one learned anchor per kept location.
# Trains on the synthetic shapes on a CPU (same data and schedule as
# configs/quickstart). The anchor size unit is scaled to the 256 px images
# like the quickstart's anchors: sigma 2 and approx octave_base_scale 2
# (the paper uses 8 on COCO's 800 px images). Unlike the paper, the CPU
# recipe drops the feature adaption (the paper's own "w/o feature adaption"
# ablation; the paper's head is feature_adaption=True, as in
# ga_retinanet_r50_fpn_synth.py): here it gave AP 0.542 with the adaption and
# 0.554 without, at 1.5x and 0.93x RetinaNet's step. It also weights the
# shape loss 2 (the paper: 1): over weights 0.1 / 1 / 2 / 4 the AP went
# 0.423 / 0.554 / 0.569 / 0.541 (docs/guided_anchoring.md).
#   python tools/train.py configs/guided_anchoring/ga_retinanet_mobilenetv3_fpn_synth.py
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(
    bbox_head=dict(
        _delete_=True,
        type="GARetinaHead",
        num_classes=6,
        feat_channels=64,
        stacked_convs=2,
        # GroupNorm in the towers (and after the adaptions' deformable convs
        # when they are on: keeps their ReLU alive under AdamW, docs/guided_anchoring.md)
        norm_cfg=dict(type="GN", num_groups=16),
        sigma=2.0,
        approx_anchor_generator=dict(octave_base_scale=2),
        loss_bbox=dict(type="GIoULoss", loss_weight=2.0),
        feature_adaption=False,  # the paper: True
        loss_shape=dict(loss_weight=2.0),  # the paper: 1.0 (BoundedIoULoss, beta 0.2)
        # everything else: the paper's values, GARetinaHead's defaults (docs/heads.md)
    ),
)
