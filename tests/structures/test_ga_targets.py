"""Guided Anchoring targets on hand-drawn cases (cells counted by hand)."""
import pytest
import torch

from toolbox.structures.ga_targets import (ga_location_targets, ga_shape_targets,
                                           target_levels)

STRIDES = (8, 16, 32)
SIZES = [(8, 8), (4, 4), (2, 2)]  # a 64 x 64 image


def counts(target):
    return {name: int((target == value).sum())
            for name, value in (("pos", 1), ("ignore", -1), ("neg", 0))}


def test_level_of_each_box_follows_its_scale():
    # base size 4 * 8 = 32 px; the level changes at 32 * sqrt(2) = 45.25 px, 90.5 px
    sides = torch.tensor([20.0, 45.0, 46.0, 90.0, 91.0, 300.0])
    boxes = torch.stack([torch.zeros(6), torch.zeros(6), sides, sides], dim=1)
    assert target_levels(boxes, 4, 8, 3).tolist() == [0, 0, 1, 1, 2, 2]


def test_location_targets_of_a_hand_drawn_box():
    # a 32 x 32 box -> level 0 (stride 8); in cells it spans [1, 5] x [1, 5]
    # centre region (0.2): x in [2.6, 3.4] -> cell 3 only           -> 1 positive
    # ignore region (0.5): x in [2.0, 4.0] -> cells 2..4 (3 x 3 = 9) -> 8 ignored
    # level 1 (adjacent, stride 16): box spans [0.5, 2.5]; ignore region
    #   x in [1.0, 2.0] -> cells 1..2 (2 x 2)                        -> 4 ignored
    # level 2 (not adjacent): all negative
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    lvl0, lvl1, lvl2 = ga_location_targets(box, SIZES, STRIDES, anchor_scale=4)
    assert counts(lvl0) == {"pos": 1, "ignore": 8, "neg": 55}
    assert lvl0[3, 3] == 1 and (lvl0[2:5, 2:5] != 0).all()
    assert counts(lvl1) == {"pos": 0, "ignore": 4, "neg": 12}
    assert (lvl1[1:3, 1:3] == -1).all()
    assert counts(lvl2) == {"pos": 0, "ignore": 0, "neg": 4}


def test_wider_ratios_and_padding():
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    # sigma1 = 0.5 makes the centre region the old ignore region (3 x 3 cells)
    lvl0, _, _ = ga_location_targets(box, SIZES, STRIDES, 4, center_ratio=0.5, ignore_ratio=0.5)
    assert counts(lvl0) == {"pos": 9, "ignore": 0, "neg": 55}
    # a 40-pixel-high image padded to 64: rows 5..7 of level 0 cover only padding
    lvl0, lvl1, _ = ga_location_targets(box, SIZES, STRIDES, 4, img_shape=(40, 64))
    assert counts(lvl0) == {"pos": 1, "ignore": 8 + 24, "neg": 31}
    # level 1: row 3 is padding; rows 0..2 hold 12 cells, 4 of them in the ignore region
    assert (lvl1[3] == -1).all() and (lvl1[:3] == 0).sum() == 8
    empty = ga_location_targets(torch.zeros(0, 4), SIZES, STRIDES, 4)
    assert all((t == 0).all() for t in empty)
    with pytest.raises(ValueError, match="center_ratio"):
        ga_location_targets(box, SIZES, STRIDES, 4, center_ratio=0.6, ignore_ratio=0.5)
    with pytest.raises(ValueError, match="3 strides"):
        ga_location_targets(box, SIZES[:2], STRIDES, 4)


def test_shape_targets_use_the_best_approximate_anchor():
    # two cells with two sampled shapes each; the ground truth is 20 x 10
    approxs = torch.tensor([[[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 20.0, 10.0]],
                            [[20.0, 0.0, 30.0, 10.0], [15.0, 0.0, 35.0, 10.0]]])
    gt = torch.tensor([[0.0, 0.0, 20.0, 10.0]])
    # cell 0: best approx IoU 1 (its square alone would give 0.5); cell 1: 50/350
    pos, matched = ga_shape_targets(approxs, gt, pos_iou_thr=0.6)
    assert pos.tolist() == [True, False]
    assert torch.equal(matched[0], gt[0])
    # cell 0 excluded (e.g. padding): the gt claims its best remaining cell
    pos, matched = ga_shape_targets(approxs, gt, 0.6, min_pos_iou=0.1,
                                    valid=torch.tensor([False, True]))
    assert pos.tolist() == [False, True] and torch.equal(matched[1], gt[0])
    pos, _ = ga_shape_targets(approxs, gt, 0.6, min_pos_iou=0.2,
                              valid=torch.tensor([False, True]))  # 1/7 < 0.2
    assert not pos.any()
    # two ground truths: each cell takes the one it overlaps most
    gts = torch.tensor([[0.0, 0.0, 20.0, 10.0], [15.0, 0.0, 35.0, 10.0]])
    pos, matched = ga_shape_targets(approxs, gts, 0.6)
    assert pos.all() and torch.equal(matched, gts)
    with pytest.raises(ValueError, match="approxs"):
        ga_shape_targets(approxs[0], gt)
