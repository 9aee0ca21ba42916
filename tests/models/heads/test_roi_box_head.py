"""RoIBoxHead: FPN level mapping (hand boxes and torchvision's LevelMapper),
pooled features against torchvision's MultiScaleRoIAlign, RoI sampling,
losses and per-class post-processing."""
import math
from collections import OrderedDict

import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn
from torchvision.ops import MultiScaleRoIAlign, box_iou
from torchvision.ops.poolers import LevelMapper

from toolbox.models.heads.roi_box_head import map_roi_levels
from toolbox.registry import HEADS
from toolbox.structures import DetDataSample, boxes_to_original

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors, shared CPU

STRIDES = (4, 8, 16, 32)


def head(**kwargs):
    cfg = dict(type="RoIBoxHead", num_classes=3, in_channels=4, strides=STRIDES, fc_channels=16)
    return HEADS.build({**cfg, **kwargs})


def square(side, x=0.0):
    return [x, 0.0, x + side, side]


def test_level_mapping_on_hand_boxes():
    # k = floor(4 + log2(sqrt(w h) / 224)), clamped to [log2 4, log2 32] = [2, 5]; index k - 2
    boxes = torch.tensor([square(224), square(112), square(448), square(223.9), square(56),
                          square(20), square(5000), [0, 0, 448, 112], [10, 10, 10, 50]])
    expected = [2, 1, 3, 1, 0, 0, 3, 2, 0]  # 448 x 112: sqrt = 224 -> k 4; empty box -> finest
    assert map_roi_levels(boxes, STRIDES).tolist() == expected


def test_level_mapping_matches_torchvision():
    torch.manual_seed(0)
    xy = torch.rand(500, 2) * 300
    boxes = torch.cat([xy, xy + torch.rand(500, 2) * 800 + 1], dim=1)
    reference = LevelMapper(k_min=2, k_max=5)([boxes])
    assert torch.equal(map_roi_levels(boxes, STRIDES), reference)


def test_pooled_features_match_torchvision_multiscale_roi_align():
    torch.manual_seed(0)
    roi_head = head(aligned=False, sampling_ratio=2)  # torchvision's pooler: not aligned
    feats = [torch.randn(2, 4, 128 // s, 128 // s) for s in STRIDES]
    boxes = [torch.tensor([[3.0, 5, 20, 30], [0, 0, 120, 110], [30, 40, 90, 70]]),
             torch.tensor([[10.0, 10, 127, 127], [50, 60, 58, 66]])]
    ours = roi_head.roi_features(feats, roi_head.to_rois(boxes))
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    reference = pooler(OrderedDict((str(i), f) for i, f in enumerate(feats)), boxes,
                       [(128, 128), (128, 128)])
    assert ours.shape == (5, 4, 7, 7)
    # float32: on a CPU the head sums each bin's corner weights in one gather
    # (bag_roi_align), torchvision point by point; the order differs in the last bits
    assert (ours - reference).abs().max().item() < 1e-5


def sample_with_gt():
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(128, 128),
                                         scale_factor=(0.5, 0.5)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[8.0, 8, 40, 36], [30, 30, 60, 62]]),
                                       labels=torch.tensor([2, 0]))
    return sample


def test_rois_are_sampled_with_ground_truth_added():
    roi_head = head()
    sample = sample_with_gt()
    torch.manual_seed(0)
    xy = torch.rand(3000, 2) * 50
    proposals = torch.cat([xy, xy + torch.rand(3000, 2) * 30 + 4], dim=1)
    boxes, labels, targets, positive = roi_head._sample_rois(proposals, sample, "cpu")
    gt = sample.gt_instances.bboxes
    best = box_iou(boxes, gt).max(dim=1)
    assert boxes.shape == (512, 4) and positive.sum() <= 128 and positive.sum() > 10
    assert (best.values[positive] >= 0.5).all() and (best.values[~positive] < 0.5).all()
    assert torch.equal(labels[positive], sample.gt_instances.labels[best.indices[positive]])
    assert (labels[~positive] == 3).all()  # background = num_classes
    # without proposals the gt boxes themselves are the positives, with zero targets
    boxes, labels, targets, positive = roi_head._sample_rois(torch.zeros(0, 4), sample, "cpu")
    assert torch.equal(boxes, sample.gt_instances.bboxes) and positive.all()
    assert torch.equal(labels, torch.tensor([2, 0])) and targets.abs().max() < 1e-6


def test_losses_of_an_untrained_head():
    roi_head = head()
    for fc in (roi_head.fc_cls, roi_head.fc_reg):
        nn.init.zeros_(fc.weight)  # uniform softmax over 4 logits: CE = ln 4
    feats = [torch.randn(1, 4, 64 // s, 64 // s) for s in STRIDES]
    proposals = [InstanceData(bboxes=torch.tensor([[9.0, 7, 41, 37], [0, 0, 20, 20]]))]
    losses = roi_head.loss(feats, proposals, [sample_with_gt()])
    assert set(losses) == {"loss_cls", "loss_bbox"}
    assert losses["loss_cls"].item() == pytest.approx(math.log(4), rel=1e-5)
    # positives: gt 1, gt 2 (zero targets) and [9, 7, 41, 37] for gt 1, whose targets are
    # ((cx, cy) shift / size) / 0.1 and log(size ratio) / 0.2: hand-computed below
    dx, dy = (24 - 25) / 32 / 0.1, (22 - 22) / 30 / 0.1
    dw, dh = math.log(32 / 32) / 0.2, math.log(28 / 30) / 0.2
    num_sampled = 4  # gt 1, gt 2, [9, 7, 41, 37] positive; [0, 0, 20, 20] negative (IoU 0.125)
    expected = (abs(dx) + abs(dy) + abs(dw) + abs(dh)) / num_sampled
    assert losses["loss_bbox"].item() == pytest.approx(expected, rel=1e-5)


def test_predict_decodes_per_class_filters_and_maps_back():
    roi_head = head(test_cfg=dict(score_thr=0.3, iou_thr=0.5, max_per_img=10))
    for fc in (roi_head.fc_cls, roi_head.fc_reg):
        nn.init.zeros_(fc.weight)
    with torch.no_grad():
        roi_head.fc_cls.bias.copy_(torch.tensor([0.0, 2.0, 0.0, 0.0]))  # class 1 wins
    feats = [torch.randn(1, 4, 64 // s, 64 // s) for s in STRIDES]
    a, b = [4.0, 4, 30, 30], [34.0, 30, 60, 62]
    proposals = [InstanceData(bboxes=torch.tensor([a, a, b, [50.0, 50, 70, 70]]))]
    gt_sample = sample_with_gt()
    result = roi_head.predict(feats, proposals, [gt_sample])[0]  # img_shape coordinates
    result.bboxes = boxes_to_original(result.bboxes, gt_sample.metainfo)  # as the detector
    softmax = math.exp(2) / (math.exp(2) + 3)
    # zero deltas: boxes are the proposals (clipped to 64 x 64), duplicates suppressed,
    # only class 1 clears score_thr, then x2 back to the 128 x 128 original
    assert torch.equal(result.labels, torch.tensor([1, 1, 1]))
    assert torch.allclose(result.scores, torch.full((3,), softmax))
    expected = torch.tensor([a, b, [50.0, 50, 64, 64]]) * 2
    order = result.bboxes[:, 0].argsort()
    assert torch.allclose(result.bboxes[order], expected)
    empty = roi_head.predict(feats, [InstanceData(bboxes=torch.zeros(0, 4))], None)[0]
    assert len(empty) == 0 and empty.bboxes.shape == (0, 4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="strides"):
        head(strides=(8, 32))
    with pytest.raises(ValueError, match="in_channels"):
        head(in_channels=(4, 8, 8, 8))
    with pytest.raises(ValueError, match="loss_cls"):
        head(loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True))
    with pytest.raises(ValueError, match="num_classes"):
        head(num_classes=0)
    with pytest.raises(ValueError, match="2 feature maps"):
        head().roi_features([torch.randn(1, 4, 8, 8)] * 2, torch.zeros(1, 5))
