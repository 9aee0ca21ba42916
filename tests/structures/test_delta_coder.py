import math

import pytest
import torch

from toolbox.structures import DeltaXYWHBBoxCoder


def test_hand_worked_delta():
    # prior: centre (5, 5), size 10 x 10; gt: centre (12, 9), size 20 x 10
    prior = torch.tensor([[0.0, 0, 10, 10]])
    gt = torch.tensor([[2.0, 4, 22, 14]])
    plain = DeltaXYWHBBoxCoder().encode(prior, gt)
    torch.testing.assert_close(plain, torch.tensor([[0.7, 0.4, math.log(2.0), 0.0]]))
    scaled = DeltaXYWHBBoxCoder(target_means=(0.1, 0, 0, 0), target_stds=(0.1, 0.1, 0.2, 0.2))
    torch.testing.assert_close(scaled.encode(prior, gt),
                               torch.tensor([[6.0, 4.0, math.log(2.0) / 0.2, 0.0]]))


def test_round_trip():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    priors = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 50], 1)
    xy = torch.rand(50, 2, generator=g) * 100
    gts = torch.cat([xy, xy + 5 + torch.rand(50, 2, generator=g) * 50], 1)
    coder = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2))
    decoded = coder.decode(priors, coder.encode(priors, gts))
    torch.testing.assert_close(decoded, gts, atol=1e-4, rtol=1e-5)
    # batched deltas broadcast against [N, 4] priors
    batched = coder.decode(priors, coder.encode(priors, gts)[None].repeat(2, 1, 1))
    torch.testing.assert_close(batched[1], gts, atol=1e-4, rtol=1e-5)


def test_clipping_and_clamps():
    prior = torch.tensor([[0.0, 0, 10, 10]])
    coder = DeltaXYWHBBoxCoder()
    box = coder.decode(prior, torch.tensor([[1.0, 0, math.log(3.0), 0]]), max_shape=(8, 12))
    # unclipped: centre (15, 5), size 30 x 10 -> [0, 0, 30, 10]; clipped to w=12, h=8
    torch.testing.assert_close(box, torch.tensor([[0.0, 0, 12, 8]]))
    # dw = 100 is clamped to |log(16/1000)|: width 10 * 1000/16 = 625
    huge = coder.decode(prior, torch.tensor([[0.0, 0, 100, 0]]))
    assert (huge[0, 2] - huge[0, 0]).item() == pytest.approx(625.0, rel=1e-4)
    ctr = DeltaXYWHBBoxCoder(add_ctr_clamp=True, ctr_clamp=32)
    moved = ctr.decode(prior, torch.tensor([[100.0, 0, 0, 0]]))
    torch.testing.assert_close(moved, torch.tensor([[32.0, 0, 42, 10]]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="target_stds"):
        DeltaXYWHBBoxCoder(target_stds=(1, 1, 0, 1))
    with pytest.raises(ValueError, match="gt_bboxes"):
        DeltaXYWHBBoxCoder().encode(torch.zeros(2, 4), torch.zeros(3, 4))


def test_matches_torchvision_box_coder():
    from torchvision.models.detection._utils import BoxCoder

    g = torch.Generator().manual_seed(1)
    xy = torch.rand(20, 2, generator=g) * 50
    priors = torch.cat([xy, xy + 4 + torch.rand(20, 2, generator=g) * 40], 1)
    xy = torch.rand(20, 2, generator=g) * 50
    gts = torch.cat([xy, xy + 4 + torch.rand(20, 2, generator=g) * 40], 1)
    stds = (0.1, 0.1, 0.2, 0.2)
    ours = DeltaXYWHBBoxCoder(target_stds=stds)
    reference = BoxCoder(weights=tuple(1 / s for s in stds))  # same clip: log(1000 / 16)
    torch.testing.assert_close(ours.encode(priors, gts), reference.encode_single(gts, priors))
    deltas = torch.randn(20, 4, generator=g) * 3
    torch.testing.assert_close(ours.decode(priors, deltas),
                               reference.decode_single(deltas, priors), atol=1e-3, rtol=1e-5)


def test_dw_clamp_max_equals_torchvision_box_coder():
    """``dw_clamp='max'`` with stds (0.1, 0.1, 0.2, 0.2) decodes as
    torchvision's BoxCoder(weights=(10, 10, 5, 5)), large negative dw included."""
    from torchvision.models.detection._utils import BoxCoder

    torch.manual_seed(0)
    xy = torch.rand(50, 2) * 100
    priors = torch.cat([xy, xy + torch.rand(50, 2) * 50 + 1], dim=1)
    deltas = torch.randn(50, 4) * 3
    deltas[:5, 2:] = -30.0  # torchvision does not clamp from below
    deltas[5:10, 2:] = 30.0
    reference = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    expected = reference.decode_single(deltas * torch.tensor([10.0, 10.0, 5.0, 5.0]), priors)
    coder = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2), dw_clamp="max")
    got = coder.decode(priors, deltas * torch.tensor([10.0, 10.0, 5.0, 5.0]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    both = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2)).decode(
        priors, deltas * torch.tensor([10.0, 10.0, 5.0, 5.0]))
    assert not torch.allclose(both[:5], expected[:5], atol=1e-3)
