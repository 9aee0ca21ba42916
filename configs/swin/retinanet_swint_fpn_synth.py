# RetinaNet-style detector on Swin-T (stages 2-4 into the FPN).
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
model = dict(backbone=dict(_delete_=True, type="SwinTransformer", arch="tiny",
                           out_indices=(1, 2, 3), drop_path_rate=0.2))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
