"""DETR's Hungarian matcher on cases worked by hand."""
import pytest
import torch

from toolbox.structures.hungarian_matcher import HungarianMatcher


def logits_for(probs):
    return torch.tensor(probs).log()


def test_three_queries_two_boxes_known_optimum():
    # Two classes + no-object. Query 0 sits on gt box B with the right class,
    # query 1 is near gt box A with the right class, query 2 is far from both.
    probs = [[0.1, 0.8, 0.1],   # q0: class 1
             [0.7, 0.2, 0.1],   # q1: class 0
             [0.3, 0.3, 0.4]]   # q2: unsure
    boxes = torch.tensor([[0.7, 0.7, 0.2, 0.2],    # q0 = gt B
                          [0.25, 0.25, 0.2, 0.2],  # q1 ~ gt A (offset 0.05 in cx)
                          [0.5, 0.1, 0.1, 0.1]])   # q2
    gt_labels = torch.tensor([0, 1])
    gt_boxes = torch.tensor([[0.2, 0.25, 0.2, 0.2],  # A, class 0
                             [0.7, 0.7, 0.2, 0.2]])  # B, class 1
    matcher = HungarianMatcher(1, 5, 2)
    cost = matcher.cost_matrix(logits_for(probs), boxes, gt_labels, gt_boxes)
    # by hand: q1 -> A: -0.7 + 5 * 0.05 - 2 * GIoU; the boxes [0.15,0.15,0.35,0.35]
    # and [0.1,0.15,0.3,0.35] intersect in 0.15 x 0.2 = 0.03, union 0.05,
    # hull = union, so GIoU = IoU = 0.6 -> cost = -0.7 + 0.25 - 1.2 = -1.65
    assert cost[1, 0].item() == pytest.approx(-1.65, abs=1e-5)
    # q0 -> B: identical boxes: -0.8 + 0 - 2 = -2.8
    assert cost[0, 1].item() == pytest.approx(-2.8, abs=1e-5)
    rows, cols = matcher.match(logits_for(probs), boxes, gt_labels, gt_boxes)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]  # q0-B, q1-A; q2 unmatched


def test_class_cost_decides_between_equal_boxes():
    # both queries predict the same box; only their class probabilities differ
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4]] * 2)
    probs = [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]]
    gt_labels = torch.tensor([1, 0])
    gt_boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4]] * 2)
    rows, cols = HungarianMatcher().match(logits_for(probs), boxes, gt_labels, gt_boxes)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_giou_cost_for_disjoint_boxes_by_hand():
    # [0,0,0.2,0.2] vs [0.4,0,0.6,0.2]: IoU 0, hull 0.6 x 0.2 = 0.12, union 0.08
    # -> GIoU = -(0.12 - 0.08) / 0.12 = -1/3; L1 = 0.4 (cx only)
    matcher = HungarianMatcher(cost_class=0, cost_bbox=5, cost_giou=2)
    cost = matcher.cost_matrix(torch.zeros(1, 2), torch.tensor([[0.1, 0.1, 0.2, 0.2]]),
                               torch.tensor([0]), torch.tensor([[0.5, 0.1, 0.2, 0.2]]))
    assert cost.item() == pytest.approx(5 * 0.4 + 2 / 3, abs=1e-5)


def test_empty_ground_truth_and_bad_input():
    matcher = HungarianMatcher()
    no_labels = torch.zeros(0, dtype=torch.long)
    rows, cols = matcher.match(torch.zeros(4, 3), torch.rand(4, 4), no_labels, torch.zeros(0, 4))
    assert rows.numel() == 0 and cols.numel() == 0
    with pytest.raises(ValueError, match="gt_labels"):
        matcher.match(torch.zeros(4, 3), torch.rand(4, 4), torch.tensor([2]), torch.rand(1, 4))
    with pytest.raises(ValueError, match="cost_bbox"):
        HungarianMatcher(cost_bbox=-1)
