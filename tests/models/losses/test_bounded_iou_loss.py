"""Bounded IoU loss on hand-worked boxes."""
import pytest
import torch

from toolbox.registry import LOSSES


def test_hand_cases():
    loss = LOSSES.build(dict(type="BoundedIoULoss", beta=0.2, eps=1e-9, reduction="none"))
    # centre shifted by 2 px on a 10 px wide target: IoU_B(x) = 6 / 14,
    # 1 - 3/7 = 0.5714 >= beta -> 0.5714 - 0.1; every other term is 0
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    target = torch.tensor([[2.0, 0.0, 12.0, 10.0]])
    torch.testing.assert_close(loss(pred, target), torch.tensor([[4 / 7 - 0.1, 0, 0, 0]]))
    # 9 px wide prediction of a 10 px target: centre off by 0.5 -> 1 - 9/11;
    # width 1 - 0.9; both below beta -> 0.5 * d^2 / beta
    pred = torch.tensor([[0.0, 0.0, 9.0, 10.0]])
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    dx, dw = 1 - 9 / 11, 0.1
    want = torch.tensor([[0.5 * dx ** 2 / 0.2, 0, 0.5 * dw ** 2 / 0.2, 0]])
    torch.testing.assert_close(loss(pred, target), want)


def test_reduction_avg_factor_and_gradients():
    loss = LOSSES.build(dict(type="BoundedIoULoss", loss_weight=2.0))
    pred = torch.tensor([[0.0, 0.0, 9.0, 10.0], [0.0, 0.0, 10.0, 10.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]], requires_grad=True)
    value = loss(pred, target, avg_factor=2.0)
    per_box = 0.5 * (2 / 11) ** 2 / 0.2 + 0.5 * 0.1 ** 2 / 0.2  # box 2 is perfect
    torch.testing.assert_close(value, torch.tensor(2.0 * per_box / 2), atol=2e-3, rtol=1e-2)
    value.backward()
    assert pred.grad.abs().sum() > 0 and target.grad is None  # the target is a constant
    weighted = loss(pred, target, weight=torch.tensor([0.0, 1.0]))
    assert weighted.item() == pytest.approx(0.0, abs=1e-6)
    assert loss(pred[:0], target[:0]).item() == 0.0
    with pytest.raises(ValueError, match="pred"):
        loss(pred[:, :2], target[:, :2])
    with pytest.raises(ValueError, match="beta"):
        LOSSES.build(dict(type="BoundedIoULoss", beta=0.0))
