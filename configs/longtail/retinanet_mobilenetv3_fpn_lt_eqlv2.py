# Long-tail study: Equalization Loss v2 (gradient-guided re-weighting; its
# accumulated gradient statistics are saved in checkpoints).
_base_ = ["./retinanet_mobilenetv3_fpn_lt_focal.py"]
model = dict(bbox_head=dict(loss_cls=dict(type="EQLv2", gamma=12.0, mu=0.8,
                                          alpha=4.0)))
