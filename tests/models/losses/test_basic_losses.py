import math

import pytest
import torch

from toolbox.errors import ConfigArgumentError
from toolbox.registry import LOSSES


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def hand_focal(logit, target, alpha=0.25, gamma=2.0):
    p = sigmoid(logit)
    if target == 1:
        return -alpha * (1 - p) ** gamma * math.log(p)
    return -(1 - alpha) * p ** gamma * math.log(1 - p)


def test_focal_loss_matches_the_formula_on_two_elements():
    loss = LOSSES.build(dict(type="FocalLoss", gamma=2.0, alpha=0.25, reduction="sum"))
    pred = torch.tensor([[0.5], [-1.0]])
    expected = hand_focal(0.5, 1) + hand_focal(-1.0, 0)
    one_hot = torch.tensor([[1.0], [0.0]])
    assert loss(pred, one_hot).item() == pytest.approx(expected, rel=1e-6)
    # integer labels: 0 is the class, 1 (= num_classes) is background
    assert loss(pred, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_weight_avg_factor_and_loss_weight():
    pred = torch.tensor([[0.5, 2.0], [-1.0, 0.3]])
    labels = torch.tensor([1, 2])  # second row is background (C = 2)
    terms = [hand_focal(0.5, 0), hand_focal(2.0, 1), hand_focal(-1.0, 0), hand_focal(0.3, 0)]
    loss = LOSSES.build(dict(type="FocalLoss", loss_weight=2.0))
    assert loss(pred, labels).item() == pytest.approx(2.0 * sum(terms) / 4, rel=1e-6)
    assert loss(pred, labels, avg_factor=1.0).item() == pytest.approx(2.0 * sum(terms), rel=1e-5)
    weighted = loss(pred, labels, weight=torch.tensor([1.0, 0.0]), avg_factor=1.0)
    assert weighted.item() == pytest.approx(2.0 * (terms[0] + terms[1]), rel=1e-5)
    no_alpha = LOSSES.build(dict(type="FocalLoss", alpha=-1, gamma=0.0, reduction="sum"))
    bce = -math.log(sigmoid(2.0)) - math.log(1 - sigmoid(0.5)) - math.log(1 - sigmoid(-1.0)) \
        - math.log(1 - sigmoid(0.3))
    assert no_alpha(pred, labels).item() == pytest.approx(bce, rel=1e-6)


def test_focal_loss_rejects_bad_labels():
    loss = LOSSES.build(dict(type="FocalLoss"))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        loss(torch.zeros(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="pred"):
        loss(torch.zeros(2), torch.tensor([0, 1]))


def test_l1_and_smooth_l1():
    pred = torch.tensor([[1.0, -2.0], [0.5, 4.0]])
    target = torch.zeros(2, 2)
    l1 = LOSSES.build(dict(type="L1Loss"))
    assert l1(pred, target).item() == pytest.approx(7.5 / 4)
    assert l1(pred, target, avg_factor=2).item() == pytest.approx(7.5 / 2)
    assert l1(pred, target, weight=torch.tensor([1.0, 0.0]), avg_factor=1).item() == pytest.approx(3.0)
    assert LOSSES.build(dict(type="L1Loss", reduction="sum"))(pred, target).item() == pytest.approx(7.5)
    smooth = LOSSES.build(dict(type="SmoothL1Loss", beta=1.0, reduction="sum"))
    # |x| < 1: 0.5 x^2; else |x| - 0.5  ->  0.5 + 1.5 + 0.125 + 3.5
    assert smooth(pred, target).item() == pytest.approx(5.625)
    empty = l1(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4))
    assert empty.item() == 0.0 and empty.requires_grad


def test_giou_loss_hand_worked():
    loss = LOSSES.build(dict(type="GIoULoss", reduction="none"))
    pred = torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2]])
    target = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2]])
    # IoU 1/7; enclosing box area 9, union 7: GIoU = 1/7 - 2/9
    expected = [1 - (1 / 7 - 2 / 9), 0.0]
    assert loss(pred, target).tolist() == pytest.approx(expected, abs=1e-6)
    mean = LOSSES.build(dict(type="GIoULoss", loss_weight=2.0))
    assert mean(pred, target, avg_factor=1).item() == pytest.approx(2 * expected[0], rel=1e-5)


def test_cross_entropy_softmax_with_ignore_and_class_weight():
    pred = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    target = torch.tensor([0, 1, -100])
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    nll1 = -math.log(math.e / (math.e + 2))
    ce = LOSSES.build(dict(type="CrossEntropyLoss"))
    assert ce(pred, target).item() == pytest.approx((nll0 + nll1) / 2, rel=1e-6)
    weighted = LOSSES.build(dict(type="CrossEntropyLoss", class_weight=[1.0, 3.0, 1.0]))
    assert weighted(pred, target).item() == pytest.approx((nll0 + 3 * nll1) / 2, rel=1e-6)
    dense = ce(torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 1], [2, -100]]]))
    assert dense.item() == pytest.approx(math.log(3.0), rel=1e-6)


def test_cross_entropy_sigmoid_with_background_label():
    ce = LOSSES.build(dict(type="CrossEntropyLoss", use_sigmoid=True, reduction="sum"))
    pred = torch.tensor([[0.0, 1.0]])
    # label 2 = background: both classes negative
    expected = math.log(2.0) + -math.log(1 - sigmoid(1.0))
    assert ce(pred, torch.tensor([2])).item() == pytest.approx(expected, rel=1e-6)
    positive = math.log(2.0) + -math.log(sigmoid(1.0))
    assert ce(pred, torch.tensor([1])).item() == pytest.approx(positive, rel=1e-6)


def test_bad_configs_are_explained():
    with pytest.raises(ConfigArgumentError, match="gama"):
        LOSSES.build(dict(type="FocalLoss", gama=2.0))
    with pytest.raises(ValueError, match="reduction"):
        LOSSES.build(dict(type="L1Loss", reduction="avg"))
    with pytest.raises(ValueError, match="avg_factor"):
        LOSSES.build(dict(type="L1Loss", reduction="sum"))(torch.ones(2), torch.zeros(2), avg_factor=2)
