# Long-tail study, baseline: the quickstart detector (sigmoid focal loss) on the
# long-tailed synthetic train split (exponential class profile, imbalance 100:
# 2793 ... 28 instances); val stays balanced.
_base_ = ["../quickstart/retinanet_mobilenetv3_fpn_synth.py"]
train_dataloader = dict(dataset=dict(long_tail=dict(profile="exponential", imbalance=100)))
