# RPN alone (SingleStageDetector + RPNHead): class-agnostic proposals on the
# synthetic shapes, evaluated by average recall (AR@100/300/1000).
# The RPN is the one of faster_rcnn_mobilenetv3_fpn_synth.py.
#   python tools/train.py configs/faster_rcnn/rpn_mobilenetv3_fpn_synth.py
_base_ = ["./faster_rcnn_mobilenetv3_fpn_synth.py"]
_rpn = {{_base_.model.rpn_head}}
model = dict(_delete_=True, type="SingleStageDetector",
             data_preprocessor={{_base_.model.data_preprocessor}},
             backbone={{_base_.model.backbone}}, neck={{_base_.model.neck}}, bbox_head=_rpn)
val_evaluator = dict(_delete_=True, type="ProposalRecallMetric", proposal_nums=(100, 300, 1000))
test_evaluator = val_evaluator
