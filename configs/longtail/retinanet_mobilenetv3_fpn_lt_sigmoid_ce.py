# Long-tail study: plain sigmoid cross-entropy (the loss EQL modifies).
_base_ = ["./retinanet_mobilenetv3_fpn_lt_focal.py"]
model = dict(bbox_head=dict(loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True)))
