"""RandomSampler: sizes and positive share of the minibatch, never ignored
priors, uniform draws."""
import pytest
import torch

from toolbox.structures.random_sampler import RandomSampler


def gt_inds(num_pos, num_neg, num_ignored=0):
    """Positives (matched to gt 1 or 2), negatives and ignored, shuffled."""
    values = torch.cat([torch.arange(num_pos) % 2 + 1, torch.zeros(num_neg, dtype=torch.long),
                        torch.full((num_ignored,), -1)])
    return values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))]


def check(inds, pos, neg):
    assert (inds[pos] > 0).all() and (inds[neg] == 0).all()
    assert pos.unique().numel() == pos.numel() and neg.unique().numel() == neg.numel()


def test_rpn_minibatch_is_half_positive_when_there_are_enough():
    inds = gt_inds(300, 5000, 400)
    pos, neg = RandomSampler(256, 0.5).sample(inds)
    assert pos.numel() == 128 and neg.numel() == 128
    check(inds, pos, neg)


def test_roi_minibatch_is_at_most_a_quarter_positive_and_negatives_fill_the_rest():
    inds = gt_inds(20, 5000)
    pos, neg = RandomSampler(512, 0.25).sample(inds)
    assert pos.numel() == 20 and neg.numel() == 492  # all positives, negatives fill up
    check(inds, pos, neg)
    plenty = gt_inds(1000, 5000)
    pos, neg = RandomSampler(512, 0.25).sample(plenty)
    assert pos.numel() == 128 and neg.numel() == 384


def test_fewer_priors_than_slots_and_ignored_priors():
    inds = gt_inds(3, 10, 50)
    pos, neg = RandomSampler(256, 0.5).sample(inds)
    assert pos.numel() == 3 and neg.numel() == 10  # everything not ignored, nothing more
    check(inds, pos, neg)
    pos, neg = RandomSampler(256, 0.5).sample(torch.full((20,), -1))
    assert pos.numel() == neg.numel() == 0


def test_negative_to_positive_upper_bound():
    pos, neg = RandomSampler(256, 0.5, neg_pos_ub=3).sample(gt_inds(10, 5000))
    assert pos.numel() == 10 and neg.numel() == 30
    pos, neg = RandomSampler(256, 0.5, neg_pos_ub=3).sample(gt_inds(0, 5000))
    assert neg.numel() == 3  # counts at least one positive


def test_draws_are_uniform_over_the_candidates():
    inds = gt_inds(40, 400)
    sampler = RandomSampler(40, 0.5)  # 20 of 40 positives, 20 of 400 negatives
    counts = torch.zeros(inds.numel())
    generator = torch.Generator().manual_seed(1)
    for _ in range(400):
        pos, neg = sampler.sample(inds, generator)
        counts[pos] += 1
        counts[neg] += 1
    # expected 400 * 20/40 = 200 per positive, 400 * 20/400 = 20 per negative
    assert counts[inds > 0].mean() == pytest.approx(200, abs=1e-6)
    assert counts[inds > 0].std() < 20 and counts[inds == 0].mean() == pytest.approx(20, abs=1e-6)
    assert counts[inds == 0].min() > 3  # every negative gets drawn sometimes


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'num'"):
        RandomSampler(0, 0.5)
    with pytest.raises(ValueError, match="pos_fraction"):
        RandomSampler(256, 1.5)
    with pytest.raises(ValueError, match="gt_inds"):
        RandomSampler(256, 0.5).sample(torch.zeros(3, 2))


@pytest.mark.parametrize("num_pos,num_neg", [(5, 40), (300, 2000), (0, 50)])
def test_always_permute_draws_what_torchvision_draws_under_one_seed(num_pos, num_neg):
    from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
    inds = gt_inds(num_pos, num_neg, num_ignored=7)
    labels = torch.where(inds > 0, torch.ones_like(inds), inds)  # torchvision: 1 / 0 / -1
    torch.manual_seed(3)
    pos_masks, neg_masks = BalancedPositiveNegativeSampler(256, 0.5)([labels])
    torch.manual_seed(3)
    pos, neg = RandomSampler(256, 0.5, always_permute=True).sample(inds)
    assert torch.equal(pos.sort().values, torch.nonzero(pos_masks[0]).flatten())
    assert torch.equal(neg.sort().values, torch.nonzero(neg_masks[0]).flatten())
