# GA-RPN alone (SingleStageDetector + GARPNHead): class-agnostic proposals
# from guided anchors on the synthetic shapes, evaluated by average recall
# (AR@100/300/1000), to compare with configs/faster_rcnn/rpn_mobilenetv3_fpn_synth.py.
# Same GA-RPN as configs/guided_anchoring/ga_faster_rcnn_mobilenetv3_fpn_synth.py
# (sigma 2 and approx octave_base_scale 2 for the 256 px images, 8 in the paper).
#   python tools/train.py configs/guided_anchoring/ga_rpn_mobilenetv3_fpn_synth.py
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(
    bbox_head=dict(
        _delete_=True,
        type="GARPNHead",
        feat_channels=64,
        sigma=2.0,
        approx_anchor_generator=dict(octave_base_scale=2),
        # everything else: the paper's values, GARPNHead's defaults (docs/heads.md)
    ),
)
val_evaluator = dict(_delete_=True, type="ProposalRecallMetric", proposal_nums=(100, 300, 1000))
test_evaluator = val_evaluator
