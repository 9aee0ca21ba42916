# Faster R-CNN R50-FPN = torchvision's `fasterrcnn_resnet50_fpn` (Ren et al. 2015
# with FPN, Lin et al. 2017), built from the toolbox's own components: ResNet-50
# with FrozenBN (eps 0, as torchvision sets for its COCO weights), FPN P2-P5 + a
# max-pooled P6, RPN (anchors 32..512, ratios 0.5/1/2, torchvision's rounding and
# strides), RoIAlign 7x7 (sampling 2, not aligned) on P2-P5, two 1024-wide fcs,
# per-class deltas (weights 10, 10, 5, 5). Published COCO val2017 box AP: 37.0.
# Checked by equivalence with torchvision (tests/reference/test_faster_rcnn_tv.py),
# not by a COCO run. torchvision's label j (1..90, background 0) is label j - 1
# here (background last); label_cat_ids maps it back to the COCO category id.
#   python tools/convert_weights.py fasterrcnn_resnet50_fpn_coco-258fb6c6.pth \
#       faster_rcnn_r50_fpn_tv.pth --format tv-faster-rcnn
#   python tools/test.py configs/reference/faster_rcnn_r50_fpn_tv.py faster_rcnn_r50_fpn_tv.pth
_base_ = ["../_base_/datasets/coco_reference.py"]

model = dict(
    type="TwoStageDetector",
    # the pipeline normalises (before resizing, as torchvision): pad only
    data_preprocessor=dict(type="DetDataPreprocessor", mean=None, std=None, pad_size_divisor=32),
    backbone=dict(type="ResNet", depth=50, out_indices=(0, 1, 2, 3), norm="FrozenBN",
                  norm_eps=0.0, frozen_stages=1),  # torchvision's trainable_backbone_layers=3
    neck=dict(type="FPN", out_channels=256, num_outs=5, add_extra_convs=False),
    rpn_head=dict(
        type="RPNHead",
        feat_channels=256,
        anchor_generator=dict(sizes=((32,), (64,), (128,), (256,), (512,)),
                              ratios=(0.5, 1.0, 2.0), round_base_anchors=True,
                              stride_from_input=True),
        assigner=dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.0,
                      match_low_quality=True, low_quality_gt="best"),
        sampler=dict(num=256, pos_fraction=0.5, always_permute=True),
        bbox_coder=dict(dw_clamp="max"),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9, loss_weight=1.0),
        ignore_padding=False,
        # rpn_pre_nms_top_n_test / rpn_post_nms_top_n_test, rpn_nms_thresh, min_size
        test_cfg=dict(nms_pre=1000, iou_thr=0.7, max_per_img=1000, min_bbox_size=1e-3,
                      min_score=0.0),
    ),
    roi_head=dict(
        type="RoIBoxHead",
        num_classes=90,
        roi_size=7,
        sampling_ratio=2,
        aligned=False,
        fc_channels=1024,
        roi_levels=(0, 1, 2, 3),  # MultiScaleRoIAlign(['0', '1', '2', '3']): not P6
        gt_proposals="last",
        assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                      match_low_quality=False),
        sampler=dict(num=512, pos_fraction=0.25, always_permute=True),
        bbox_coder=dict(target_stds=(0.1, 0.1, 0.2, 0.2), dw_clamp="max"),
        loss_cls=dict(type="CrossEntropyLoss", loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0 / 9, loss_weight=1.0),
        test_cfg=dict(score_thr=0.05, iou_thr=0.5, max_per_img=100, min_bbox_size=1e-2),
    ),
    # rpn_pre_nms_top_n_train / rpn_post_nms_top_n_train
    train_cfg=dict(rpn_proposal=dict(nms_pre=2000, max_per_img=2000)),
)
# toolbox label j is COCO category id j + 1
test_dataloader = dict(dataset=dict(label_cat_ids=list(range(1, 91))))
val_dataloader = test_dataloader
