import pytest
import torch

from toolbox.structures import batched_nms_postprocess, filter_scores_and_topk

# A and B overlap with IoU 81 / 119 = 0.68; C is B's box in another class; D is far away.
BOXES = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11], [50, 50, 60, 60]])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6])
LABELS = torch.tensor([0, 0, 1, 0])


def test_classwise_nms_keeps_expected_boxes():
    boxes, scores, labels = batched_nms_postprocess(BOXES, SCORES, LABELS, iou_thr=0.5)
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    torch.testing.assert_close(boxes, BOXES[[0, 2, 3]])
    assert labels.tolist() == [0, 1, 0]


def test_threshold_agnostic_and_limit():
    _, scores, _ = batched_nms_postprocess(BOXES, SCORES, LABELS, iou_thr=0.7)
    assert len(scores) == 4  # 0.68 < 0.7: nothing suppressed
    boxes, _, _ = batched_nms_postprocess(BOXES, SCORES, LABELS, iou_thr=0.5, class_agnostic=True)
    torch.testing.assert_close(boxes, BOXES[[0, 3]])
    boxes, _, _ = batched_nms_postprocess(BOXES, SCORES, LABELS, iou_thr=0.5, max_per_img=2)
    torch.testing.assert_close(boxes, BOXES[[0, 2]])
    empty = batched_nms_postprocess(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5)
    assert all(t.numel() == 0 for t in empty)


def test_filter_scores_and_topk():
    scores = torch.tensor([[0.1, 0.9], [0.6, 0.02], [0.5, 0.7]])
    s, labels, priors = filter_scores_and_topk(scores, score_thr=0.3, topk=3)
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert labels.tolist() == [1, 1, 0] and priors.tolist() == [0, 2, 1]
    s, labels, priors = filter_scores_and_topk(scores, score_thr=0.3, topk=2)
    assert priors.tolist() == [0, 2]
    s, _, _ = filter_scores_and_topk(scores, score_thr=0.95, topk=5)
    assert s.numel() == 0


def test_proposal_nms_suppresses_within_a_level_only_and_filters_small_boxes():
    from toolbox.structures.nms import proposal_nms

    level0 = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [50., 50., 51., 60.]])
    level1 = torch.tensor([[0., 0., 10., 10.], [20., 20., 40., 40.]])
    scores0 = torch.tensor([0.9, 0.8, 0.95])   # box 1 overlaps box 0 (IoU 9/11)
    scores1 = torch.tensor([0.7, 0.6])         # same box as level 0's first: other level
    boxes, scores = proposal_nms([level0, level1], [scores0, scores1], min_bbox_size=2,
                                 iou_thr=0.7, max_per_img=0)
    # the 1-pixel-wide box is dropped, level 0's second box is suppressed by its
    # first, level 1's copy of that box survives (NMS runs per level)
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert torch.equal(boxes[1], level1[0])
    top, top_scores = proposal_nms([level0, level1], [scores0, scores1], 2, 0.7, max_per_img=2)
    assert top_scores.tolist() == pytest.approx([0.9, 0.7]) and top.shape == (2, 4)
