# Long-tail study: softmax classification (background as an extra class) with
# plain cross-entropy: the baseline for Balanced Softmax.
_base_ = ["./retinanet_mobilenetv3_fpn_lt_focal.py"]
model = dict(bbox_head=dict(loss_cls=dict(type="CrossEntropyLoss",
                                          use_sigmoid=False)))
