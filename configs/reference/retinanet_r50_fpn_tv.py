# torchvision's `retinanet_resnet50_fpn` (RetinaNet, ResNet-50-FPN, COCO_V1 weights: box AP 36.4
# on COCO val2017 as published by torchvision), built from the toolbox's own components.
# Loaded with converted weights it is the same model, checked by equivalence tests
# (tests/reference/test_retinanet_tv.py), not by a COCO run here:
#   python tools/convert_weights.py retinanet_resnet50_fpn_coco-eeacb38b.pth retinanet_tv.pth
#   python tools/test.py configs/reference/retinanet_r50_fpn_tv.py retinanet_tv.pth
# What makes it torchvision's: FrozenBN ResNet-50 with eps 0 (torchvision sets eps=0.0 when it
# loads these weights), C3-C5 into the FPN, P6 from P5 (`LastLevelP6P7(256, 256)`: use_P5) and
# P7 from relu(P6); 9 anchors per cell with torchvision's integer sizes, rounded corners and
# input-derived strides; its Matcher (0.5 / 0.4, low-quality matches to the anchor's best gt);
# focal + L1 losses normalised per image; the BoxCoder's one-sided dw/dh clamp; top 1000 per
# level above 0.05, NMS 0.5, 300 per image; torchvision's resize rule, mean/std, padding to 32.
_base_ = ["../_base_/datasets/coco_reference.py"]

anchor_sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3)))
                     for x in (32, 64, 128, 256, 512))  # ((32, 40, 50), (64, 80, 101), ...)
model = dict(
    type="SingleStageDetector",
    # the pipeline normalises (before resizing, as torchvision): pad only
    data_preprocessor=dict(type="DetDataPreprocessor", mean=None, std=None, pad_size_divisor=32),
    backbone=dict(type="ResNet", depth=50, out_indices=(1, 2, 3), frozen_stages=1,
                  norm="FrozenBN", norm_eps=0.0),
    neck=dict(type="FPN", out_channels=256, num_outs=5, add_extra_convs="on_output",
              relu_before_extra_convs=True),
    bbox_head=dict(
        type="RetinaHead", num_classes=91, feat_channels=256, stacked_convs=4,
        anchor_generator=dict(sizes=anchor_sizes, ratios=(0.5, 1.0, 2.0),
                              round_base_anchors=True, stride_from_input=True),
        assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0, low_quality_gt="best",
                      ignore_iof_thr=-1.0),  # torchvision ignores no regions
        bbox_coder=dict(dw_clamp="max"),
        loss_cls=dict(type="FocalLoss", gamma=2.0, alpha=0.25),
        loss_bbox=dict(type="L1Loss"),
        loss_normalizer="image", skip_padding_anchors=False,
        test_cfg=dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=300)))
# label index == COCO category id (torchvision's 91-entry space, 0 = background, never predicted)
test_dataloader = dict(dataset=dict(label_cat_ids=list(range(91))))
