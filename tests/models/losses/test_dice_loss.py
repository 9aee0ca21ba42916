"""DiceLoss / DiceCELoss: MONAI's DiceCELoss, a hand-worked case, ignored
pixels; and the long-tail losses on flattened per-pixel logits."""
import math

import pytest
import torch
import torch.nn.functional as F

from toolbox.registry import LOSSES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shape", [(2, 4, 6, 5), (2, 3, 5, 4, 3)])
@pytest.mark.parametrize("options", [dict(), dict(squared_pred=True, smooth_nr=0.0,
                                                  smooth_dr=1e-6),
                                     dict(include_background=False, batch=True)])
def test_dice_ce_equals_monai(shape, options):
    import monai.losses as monai_losses  # a declared test dependency (the reference)
    torch.manual_seed(0)
    logits = torch.randn(shape, requires_grad=True)
    labels = torch.randint(0, shape[1], (shape[0],) + shape[2:])
    ours = LOSSES.build(dict(type="DiceCELoss", **options))(logits, labels)
    ref = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True, **options)(
        logits, labels[:, None])
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    g_ours, = torch.autograd.grad(ours, logits)
    g_ref, = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-6, rtol=1e-5)
    dice = LOSSES.build(dict(type="DiceLoss", **{k: v for k, v in options.items()}))
    ref_dice = monai_losses.DiceLoss(to_onehot_y=True, softmax=True, **options)
    torch.testing.assert_close(dice(logits, labels), ref_dice(logits, labels[:, None]))


def test_dice_ce_by_hand():
    """One image of 2 pixels, 2 classes, logits chosen so p = (0.5, 0.5) and (a, 1 - a)."""
    a = 0.8
    logits = torch.tensor([[[0.0, math.log(a / (1 - a))], [0.0, 0.0]]])  # [B=1, C=2, 2]
    labels = torch.tensor([[0, 1]])
    # class 0: p = (0.5, a), g = (1, 0) -> I = 0.5, sum p + sum g = 0.5 + a + 1
    # class 1: p = (0.5, 1 - a), g = (0, 1) -> I = 1 - a, sums 0.5 + 1 - a + 1
    dice0 = 1 - 2 * 0.5 / (1.5 + a)
    dice1 = 1 - 2 * (1 - a) / (2.5 - a)
    ce = (-math.log(0.5) - math.log(1 - a)) / 2
    loss = LOSSES.build(dict(type="DiceCELoss", smooth_nr=0.0, smooth_dr=0.0))(logits, labels)
    assert loss.item() == pytest.approx((dice0 + dice1) / 2 + ce, rel=1e-6)
    weighted = LOSSES.build(dict(type="DiceCELoss", smooth_nr=0.0, smooth_dr=0.0,
                                 lambda_dice=0.0, lambda_ce=2.0, loss_weight=0.5))
    assert weighted(logits, labels).item() == pytest.approx(ce, rel=1e-6)


def test_ignored_pixels_count_nowhere():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 6, 7, requires_grad=True)
    labels = torch.randint(0, 3, (2, 6, 7))
    ignored = labels.clone()
    ignored[:, :, 4:] = 255
    loss_fn = LOSSES.build(dict(type="DiceCELoss"))
    loss = loss_fn(logits, ignored)
    # the same as evaluating only the kept columns
    kept = loss_fn(logits[..., :4], labels[..., :4])
    torch.testing.assert_close(loss, kept)
    grad, = torch.autograd.grad(loss, logits)
    assert (grad[..., 4:] == 0).all() and grad[..., :4].abs().sum() > 0
    all_ignored = torch.full_like(labels, 255)
    assert torch.isfinite(loss_fn(logits, all_ignored))


def test_bad_input_errors():
    loss_fn = LOSSES.build(dict(type="DiceCELoss"))
    logits = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"'target' must be integer labels of shape \(1, 4, 4\)"):
        loss_fn(logits, torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"'target' must lie in \[0, 3\)"):
        loss_fn(logits, torch.full((1, 4, 4), 3))
    with pytest.raises(ValueError, match="class_weight"):
        LOSSES.build(dict(type="DiceCELoss", class_weight=[1.0, 2.0]))(
            logits, torch.zeros(1, 4, 4, dtype=torch.long))


def test_long_tail_losses_on_flattened_pixels():
    """BalancedSoftmax and EQL take [N, C] logits: per-pixel logits flattened
    ([B, C, H, W] -> [B*H*W, C], ignored pixels dropped) work, with pixel counts
    as class frequencies (what SegDataset.class_frequencies returns)."""
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 5, 6)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[0, 0] = 255
    flat = logits.permute(0, 2, 3, 1).reshape(-1, 4)
    target = labels.reshape(-1)
    keep = target != 255
    counts = [500, 50, 20, 5]
    bs = LOSSES.build(dict(type="BalancedSoftmax"))
    bs.set_class_frequencies(counts)
    shift = torch.log(torch.tensor(counts, dtype=torch.float32))
    expected = F.cross_entropy(flat[keep] + shift, target[keep])  # the shift's mean cancels
    torch.testing.assert_close(bs(flat[keep], target[keep]), expected)
    eql = LOSSES.build(dict(type="EQL", tail_threshold=0.5))
    eql.set_class_frequencies(counts, image_counts=[10, 10, 4, 1], num_images=10)
    value = eql(flat[keep], target[keep])
    assert torch.isfinite(value) and value > 0
