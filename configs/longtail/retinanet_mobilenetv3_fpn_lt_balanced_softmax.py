# Long-tail study: Balanced Softmax (logits shifted by log n_j in training,
# plain softmax at inference); counts come from the training set.
_base_ = ["./retinanet_mobilenetv3_fpn_lt_focal.py"]
model = dict(bbox_head=dict(loss_cls=dict(type="BalancedSoftmax")))
