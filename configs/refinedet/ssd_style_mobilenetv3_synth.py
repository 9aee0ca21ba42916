# The paper's one-step ablation of refinedet_mobilenetv3_synth.py: no ARM (no
# anchor refinement, no negative anchor filtering), the ODM predicts from the
# plain anchors on the TCB features, like an SSD head. Everything else equal,
# so the two configs compare the two-step cascade against one step.
_base_ = ["./refinedet_mobilenetv3_synth.py"]
model = dict(bbox_head=dict(use_arm=False))
