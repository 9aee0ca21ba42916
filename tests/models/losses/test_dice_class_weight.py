"""DiceLoss(class_weight) / DiceCELoss(dice_class_weight): a hand-worked case,
MONAI's DiceCELoss(weight) and the unweighted default left unchanged."""
import math

import pytest
import torch

from toolbox.registry import LOSSES

pytestmark = pytest.mark.usefixtures("one_thread")


def _two_pixel_case(a=0.8):
    """One image of 2 pixels, 2 classes: p = (0.5, 0.5) and (a, 1 - a); labels (0, 1)."""
    logits = torch.tensor([[[0.0, math.log(a / (1 - a))], [0.0, 0.0]]])  # [B=1, C=2, 2]
    labels = torch.tensor([[0, 1]])
    dice0 = 1 - 2 * 0.5 / (1.5 + a)          # I = 0.5, sum p + sum g = 0.5 + a + 1
    dice1 = 1 - 2 * (1 - a) / (2.5 - a)      # I = 1 - a, sums 0.5 + 1 - a + 1
    return logits, labels, dice0, dice1


def test_weighted_dice_by_hand():
    logits, labels, dice0, dice1 = _two_pixel_case()
    exact = dict(smooth_nr=0.0, smooth_dr=0.0)
    loss = LOSSES.build(dict(type="DiceLoss", class_weight=[0.5, 3.0], **exact))
    assert loss(logits, labels).item() == pytest.approx((0.5 * dice0 + 3.0 * dice1) / 2, rel=1e-6)
    # without background the class-0 entry is dropped: the mean over the one class left
    fg = LOSSES.build(dict(type="DiceLoss", class_weight=[7.0, 3.0], include_background=False,
                           **exact))
    assert fg(logits, labels).item() == pytest.approx(3.0 * dice1, rel=1e-6)
    # in DiceCELoss the Dice weights leave the cross-entropy unweighted
    ce = (-math.log(0.5) - math.log(1 - 0.8)) / 2
    both = LOSSES.build(dict(type="DiceCELoss", dice_class_weight=[0.5, 3.0], **exact))
    assert both(logits, labels).item() == pytest.approx((0.5 * dice0 + 3.0 * dice1) / 2 + ce,
                                                        rel=1e-6)


@pytest.mark.parametrize("options", [dict(), dict(include_background=False, batch=True),
                                     dict(squared_pred=True, smooth_nr=0.0, smooth_dr=1e-6)])
def test_weighted_dice_ce_equals_monai(options):
    import monai.losses as monai_losses  # the reference
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 5, 4, 3, requires_grad=True)
    labels = torch.randint(0, 4, (2, 5, 4, 3))
    weight = [0.5, 1.0, 2.0, 4.0]
    ours = LOSSES.build(dict(type="DiceCELoss", class_weight=weight, dice_class_weight=weight,
                             **options))(logits, labels)
    ref = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True, weight=torch.tensor(weight),
                                  **options)(logits, labels[:, None])
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    g_ours, = torch.autograd.grad(ours, logits)
    g_ref, = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-6, rtol=1e-5)


def test_unit_weights_change_nothing_and_bad_weights_fail():
    torch.manual_seed(4)
    logits = torch.randn(2, 3, 6, 5)
    labels = torch.randint(0, 3, (2, 6, 5))
    plain = LOSSES.build(dict(type="DiceCELoss"))(logits, labels)
    ones = LOSSES.build(dict(type="DiceCELoss", dice_class_weight=[1.0, 1.0, 1.0]))(logits, labels)
    assert torch.equal(plain, ones)
    with pytest.raises(ValueError, match="'class_weight' has 2 entries for 3"):
        LOSSES.build(dict(type="DiceLoss", class_weight=[1.0, 2.0]))(logits, labels)
    with pytest.raises(ValueError, match=">= 0"):
        LOSSES.build(dict(type="DiceLoss", class_weight=[1.0, -1.0, 1.0]))
