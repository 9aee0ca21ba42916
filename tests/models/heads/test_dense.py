"""The dense-head toolkit, on hand-made inputs."""
import pytest
import torch

from toolbox.models.heads.dense import (anchor_labels, assign_inside, decode_detections,
                                        graph_zero, regression_loss, select_proposals)
from toolbox.models.losses.l1_loss import L1Loss
from toolbox.structures import DeltaXYWHBBoxCoder, MaxIoUAssigner

pytestmark = pytest.mark.usefixtures("one_thread")

ANCHORS = torch.tensor([[0.0, 0, 10, 10], [0, 0, 12, 12], [30, 30, 40, 40], [50, 50, 60, 60]])
GT = torch.tensor([[0.0, 0, 11, 11]])


def test_assign_inside_then_labels():
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0)
    inside = torch.tensor([True, True, True, False])
    gt_inds = assign_inside(assigner, ANCHORS, inside, GT, torch.tensor([2]), None)
    assert gt_inds.tolist() == [1, 1, 0, -1]  # the last one is outside: not counted
    labels, counted, pos, matched = anchor_labels(gt_inds, torch.tensor([2]), 5, GT)
    assert labels.tolist() == [2, 2, 5, 5]
    assert counted.tolist() == [True, True, True, False] and pos.tolist() == [True, True, False, False]
    assert torch.equal(matched, GT.expand(2, 4))
    binary, _, _, _ = anchor_labels(gt_inds, None, 1, GT)
    assert binary.tolist() == [0, 0, 1, 1]


def test_regression_loss_and_its_ddp_fallback():
    branch = torch.ones(2, 3, requires_grad=True)
    pred, target = torch.tensor([[1.0, 2, 3, 4]]), torch.zeros(1, 4)
    assert regression_loss(L1Loss(), pred, target, 2.0, branch).item() == pytest.approx(5.0)
    zero = regression_loss(L1Loss(), pred[:0], target[:0], 1.0, branch)
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(branch.grad, torch.zeros(2, 3))
    assert graph_zero(branch).requires_grad


def test_decode_detections_top_k_then_class_wise_nms():
    coder = DeltaXYWHBBoxCoder()
    scores = [torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.2, 0.05]])]
    priors = [ANCHORS[:3]]
    cfg = dict(score_thr=0.15, nms_pre=10, iou_thr=0.5, max_per_img=10)
    result = decode_detections(scores, [torch.zeros(3, 4)], priors, coder, cfg, (64, 64))
    # class 0: anchors 0 and 1 overlap (IoU 0.69): 0.9 survives; class 1: 0.7; class 0: 0.2
    assert result.scores.tolist() == pytest.approx([0.9, 0.7, 0.2])
    assert result.labels.tolist() == [0, 1, 0]


def test_select_proposals_keeps_the_best_logits_per_level():
    coder = DeltaXYWHBBoxCoder()
    logits = [torch.tensor([3.0, 2.0, -1.0]), torch.tensor([0.0])]
    priors = [ANCHORS[:3], ANCHORS[3:]]
    cfg = dict(nms_pre=2, min_bbox_size=0, iou_thr=0.5, max_per_img=10)
    result = select_proposals(logits, [torch.zeros(3, 4), torch.zeros(1, 4)], priors, coder, cfg,
                              (64, 64))
    # level 0 keeps logits 3 and 2 (overlapping: NMS keeps 3); level 1 its only anchor
    assert result.scores.tolist() == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item(), 0.5])
    assert result.labels.tolist() == [0, 0]
