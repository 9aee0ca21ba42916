# Faster R-CNN (RPN + RoIAlign box head) on the synthetic shapes, on a CPU:
# MobileNetV3-Small, FPN (strides 8-128). Sizes are scaled to the 256 px
# synthetic images: anchor scale 2 (not 8; objects are 10-128 px) and a
# 256-wide box head (not 1024). For the CPU step time (benchmarks/
# results_step_profile_cpu.md) training samples 256 RoIs per image (the
# paper's 512; GA-Faster R-CNN's 256) from the RPN's 1000 best boxes per level
# before NMS (the paper's 2000), with a batch of a few objects per image;
# everything else is Faster R-CNN's.
#   python tools/train.py configs/faster_rcnn/faster_rcnn_mobilenetv3_fpn_synth.py
_base_ = [
    "../_base_/datasets/synthetic_detection.py",
    "../_base_/schedules/quickstart_cpu.py",
    "../_base_/runtime/default_runtime.py",
]
model = dict(
    type="TwoStageDetector",
    # uint8 images in; normalised (ImageNet RGB mean/std) and padded on the device
    data_preprocessor=dict(type="DetDataPreprocessor", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                           pad_size_divisor=32, channels_last=True),
    backbone=dict(type="MobileNetV3", arch="small", out_indices=(1, 2, 3)),
    neck=dict(type="FPN", out_channels=64, start_level=0, add_extra_convs="on_input",
              num_outs=5),
    rpn_head=dict(
        type="RPNHead",
        feat_channels=64,
        anchor_generator=dict(scales=(2.0,)),  # 16 px at stride 8 for the small images
        # everything else: Faster R-CNN's values, RPNHead's defaults (docs/heads.md)
    ),
    roi_head=dict(
        type="RoIBoxHead",
        num_classes=6,
        fc_channels=256,
        sampler=dict(num=256),  # Faster R-CNN: 512
        # everything else: Faster R-CNN's values, RoIBoxHead's defaults (docs/heads.md)
    ),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=1000)),  # Faster R-CNN: 2000
)
