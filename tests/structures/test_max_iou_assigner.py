import pytest
import torch

from toolbox.structures import MaxIoUAssigner

GT = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110]])
LABELS = torch.tensor([3, 7])
# IoU with gt0 / gt1, worked by hand (all areas are <= 100, boxes nested):
PRIORS = torch.tensor([
    [0.0, 0, 10, 10],       # 1.0 with gt0           -> positive
    [0, 0, 10, 5],          # 50 / 100 = 0.5         -> positive (>= 0.5)
    [0, 0, 10, 4],          # 0.4                    -> ignored (neither < 0.4 nor >= 0.5)
    [0, 0, 10, 3],          # 0.3                    -> negative
    [20, 20, 30, 30],       # 0                      -> negative
    [100, 100, 110, 102],   # 0.2 with gt1           -> only a low-quality match
    [100, 108, 110, 110],   # 0.2 with gt1 (a tie)
])


def test_hand_worked_assignment_with_low_quality_matches():
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.1)
    result = assigner.assign(PRIORS, GT, LABELS)
    assert result.gt_inds.tolist() == [1, 1, -1, 0, 0, 2, 2]
    assert result.labels.tolist() == [3, 3, -1, -1, -1, 7, 7]
    assert result.max_overlaps.tolist() == pytest.approx([1.0, 0.5, 0.4, 0.3, 0.0, 0.2, 0.2])
    assert result.pos_mask.sum() == 4 and result.neg_mask.sum() == 2 and result.ignore_mask.sum() == 1


def test_low_quality_variants():
    only_best = MaxIoUAssigner(0.5, 0.4, min_pos_iou=0.1, gt_max_assign_all=False)
    assert only_best.assign(PRIORS, GT).gt_inds.tolist() == [1, 1, -1, 0, 0, 2, 0]
    too_strict = MaxIoUAssigner(0.5, 0.4, min_pos_iou=0.3)
    assert too_strict.assign(PRIORS, GT).gt_inds.tolist() == [1, 1, -1, 0, 0, 0, 0]
    off = MaxIoUAssigner(0.5, 0.4, match_low_quality=False)
    assert off.assign(PRIORS, GT).gt_inds.tolist() == [1, 1, -1, 0, 0, 0, 0]


def test_negative_range():
    assigner = MaxIoUAssigner(0.5, neg_iou_thr=(0.1, 0.4), match_low_quality=False)
    # IoU 0 falls below the range: ignored instead of negative
    assert assigner.assign(PRIORS, GT).gt_inds.tolist() == [1, 1, -1, 0, -1, 0, 0]


def test_ignore_regions():
    assigner = MaxIoUAssigner(0.5, 0.4, ignore_iof_thr=0.5)
    ignored = torch.tensor([[0.0, 0, 10, 10]])
    result = assigner.assign(PRIORS[:5], GT[:1], LABELS[:1], ignored_bboxes=ignored)
    # priors 0-3 lie inside the ignored box: ignored even where they match gt0
    assert result.gt_inds.tolist() == [-1, -1, -1, -1, 0]


def test_no_gt_and_no_priors():
    assigner = MaxIoUAssigner(0.5, 0.4)
    empty = assigner.assign(PRIORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.gt_inds.tolist() == [0] * 7 and empty.labels.tolist() == [-1] * 7
    none = assigner.assign(torch.zeros(0, 4), GT, LABELS)
    assert none.gt_inds.numel() == 0 and none.num_gts == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="neg_iou_thr"):
        MaxIoUAssigner(0.4, 0.5)
    with pytest.raises(ValueError, match="gt_bboxes"):
        MaxIoUAssigner(0.5, 0.4).assign(PRIORS, torch.zeros(3))


def test_ignore_regions_without_gt():
    assigner = MaxIoUAssigner(0.5, 0.4, ignore_iof_thr=0.5)
    result = assigner.assign(PRIORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                             ignored_bboxes=torch.tensor([[0.0, 0, 10, 10]]))
    assert result.gt_inds.tolist() == [-1, -1, -1, -1, 0, 0, 0]


def test_low_quality_matches_go_to_the_priors_best_gt_as_in_torchvision():
    # prior 0 is the best prior of both gts (IoU 0.4 with gt0, 0.15 with gt1): the claiming
    # mode gives it to the last claimant, torchvision to the gt it overlaps most
    gt = torch.tensor([[0.0, 0, 10, 10], [6, 0, 14, 10]])
    priors = torch.tensor([[0.0, 0, 10, 4], [20, 20, 30, 30]])
    claiming = MaxIoUAssigner(0.5, 0.4).assign(priors, gt)
    best = MaxIoUAssigner(0.5, 0.4, low_quality_gt="best").assign(priors, gt)
    assert claiming.gt_inds.tolist() == [2, 0] and best.gt_inds.tolist() == [1, 0]
    with pytest.raises(ValueError, match="low_quality_gt"):
        MaxIoUAssigner(0.5, 0.4, low_quality_gt="last")


def test_best_low_quality_mode_equals_torchvision_matcher():
    from torchvision.models.detection._utils import Matcher
    from torchvision.ops import box_iou

    g = torch.Generator().manual_seed(0)

    def boxes(n, size):
        xy = torch.rand(n, 2, generator=g) * 200
        return torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * size], dim=1)

    for _ in range(5):
        gt, priors = boxes(12, 80), boxes(3000, 60)
        priors = torch.cat([priors, priors[:50]])  # exact ties between priors
        matches = Matcher(0.5, 0.4, allow_low_quality_matches=True)(box_iou(gt, priors))
        # torchvision: -1 below the low threshold (negative), -2 between (ignored), k >= 0 gt k
        expected = torch.where(matches == -1, 0, torch.where(matches == -2, -1, matches + 1))
        got = MaxIoUAssigner(0.5, 0.4, low_quality_gt="best").assign(priors, gt).gt_inds
        assert torch.equal(got, expected)
