# The quickstart: train a small RetinaNet-style detector on the embedded
# synthetic shapes and evaluate it with both COCO and VOC metrics, on a CPU.
#   python tools/train.py configs/quickstart/retinanet_mobilenetv3_fpn_synth.py
_base_ = [
    "../_base_/models/retinanet_mobilenetv3_fpn.py",
    "../_base_/datasets/synthetic_detection.py",
    "../_base_/schedules/quickstart_cpu.py",
    "../_base_/runtime/default_runtime.py",
]
# NHWC batches: oneDNN's channels-last kernels cut the CPU training step by
# about 30% (the depthwise convolutions' backward above all), with the same
# losses to float rounding (benchmarks/quickstart_profile.py).
model = dict(data_preprocessor=dict(channels_last=True))
