"""Balanced Softmax (Ren et al., NeurIPS 2020) against hand-worked cases."""
import io
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolbox.registry import LOSSES


def build(counts, **kw):
    loss = LOSSES.build(dict(type="BalancedSoftmax", **kw))
    loss.set_class_frequencies(counts, [min(c, 1) for c in counts])
    return loss


def hand_loss(logits, priors, label):
    """-log(n_y e^z_y / sum_j n_j e^z_j) and its gradient p_j - [j == y]."""
    terms = [n * math.exp(z) for z, n in zip(logits, priors)]
    total = sum(terms)
    grad = [t / total - (j == label) for j, t in enumerate(terms)]
    return -math.log(terms[label] / total), grad


@pytest.mark.parametrize("num_logits", [3, 4])  # without / with a background column
def test_equal_counts_is_plain_cross_entropy(num_logits):
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(7, num_logits, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, num_logits, (7,), generator=gen)
    ours_pred, ref_pred = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    ours = build([5, 5, 5])(ours_pred, labels)
    ref = F.cross_entropy(ref_pred, labels)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(ours_pred.grad, ref_pred.grad, rtol=1e-12, atol=0)


def test_three_classes_equal_cross_entropy_of_logits_plus_log_counts():
    # n = [4, 2, 1], z = [1.0, 0.5, -0.2], label 2:
    # loss = -log(1 e^-0.2 / (4 e^1 + 2 e^0.5 + 1 e^-0.2))
    loss = build([4, 2, 1], reduction="sum")
    rows = [([1.0, 0.5, -0.2], 2), ([0.3, -1.0, 2.0], 0)]
    pred = torch.tensor([r[0] for r in rows], dtype=torch.float64, requires_grad=True)
    value = loss(pred, torch.tensor([r[1] for r in rows]))
    value.backward()
    hand = [hand_loss(z, [4, 2, 1], y) for z, y in rows]
    assert value.item() == pytest.approx(sum(h[0] for h in hand), rel=1e-12)
    assert pred.grad.tolist() == [pytest.approx(h[1], rel=1e-12) for h in hand]
    shifted = F.cross_entropy(pred.detach() + torch.tensor([4.0, 2, 1], dtype=torch.float64).log(),
                              torch.tensor([2, 0]), reduction="sum")
    assert value.item() == pytest.approx(shifted.item(), rel=1e-12)


def test_background_gets_the_prior_of_an_average_class():
    # counts [3, 1]: mean 2, so the priors are [3/2, 1/2] and 1 for background.
    # z = [0.2, 0.4, 1.0], label 2 (background):
    # loss = -log(e^1 / (1.5 e^0.2 + 0.5 e^0.4 + e^1))
    loss = build([3, 1], reduction="sum")
    assert loss.logit_shift(3).tolist() == pytest.approx([math.log(1.5), math.log(0.5), 0.0])
    pred = torch.tensor([[0.2, 0.4, 1.0], [0.2, 0.4, 1.0]], dtype=torch.float64,
                        requires_grad=True)
    value = loss(pred, torch.tensor([2, 1]))
    value.backward()
    hand = [hand_loss([0.2, 0.4, 1.0], [1.5, 0.5, 1.0], y) for y in (2, 1)]
    assert value.item() == pytest.approx(hand[0][0] + hand[1][0], rel=1e-12)
    assert pred.grad.tolist() == [pytest.approx(h[1], rel=1e-12) for h in hand]


def test_zero_count_class_is_smoothed_to_one():
    with pytest.warns(UserWarning, match=r"classes \[1\] have no training instance"):
        loss = build([4, 0], reduction="sum")
    assert loss.class_counts.tolist() == [4.0, 1.0]
    pred = torch.tensor([[0.3, -0.5]], dtype=torch.float64, requires_grad=True)
    value = loss(pred, torch.tensor([1]))
    value.backward()
    hand, grad = hand_loss([0.3, -0.5], [4, 1], 1)
    assert math.isfinite(value.item()) and value.item() == pytest.approx(hand, rel=1e-12)
    assert pred.grad[0].tolist() == pytest.approx(grad, rel=1e-12)
    with pytest.raises(ValueError, match="0 training instances"):
        build([0, 0])


def test_inference_probabilities_are_the_unshifted_softmax():
    loss = build([9, 1])
    logits = torch.tensor([[0.0, 0.0, 0.0]])
    assert loss.predict_probs(logits).tolist() == [pytest.approx([1 / 3] * 3)]


def test_weight_avg_factor_and_loss_weight():
    loss = build([2, 2], loss_weight=0.5)
    pred = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2])
    terms = F.cross_entropy(pred, labels, reduction="none")  # equal counts: no shift
    assert loss(pred, labels).item() == pytest.approx(0.5 * terms.mean().item(), rel=1e-6)
    value = loss(pred, labels, weight=torch.tensor([0.0, 1.0]), avg_factor=4.0)
    assert value.item() == pytest.approx(0.5 * terms[1].item() / 4, rel=1e-6)


def test_errors():
    fresh = LOSSES.build(dict(type="BalancedSoftmax"))
    with pytest.raises(RuntimeError, match="ClassFrequencyHook"):
        fresh(torch.zeros(2, 3), torch.tensor([0, 1]))
    loss = build([3, 1])
    with pytest.raises(ValueError, match="expected 2 .* or 3"):
        loss(torch.zeros(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="instance_counts"):
        fresh.set_class_frequencies([1.5, 2], [1, 1])


def test_counts_survive_a_checkpoint_round_trip():
    loss = build([7, 3, 1])
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    fresh = LOSSES.build(dict(type="BalancedSoftmax"))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.class_counts.tolist() == [7.0, 3.0, 1.0]
    assert torch.equal(fresh.logit_shift(4), loss.logit_shift(4))


def test_engine_hook_hands_counts_over():
    from toolbox.engine.hooks import ClassFrequencyHook

    class Dataset:
        def class_frequencies(self):
            return dict(instance_counts=[6, 2], image_counts=[4, 1])

    model = nn.Module()
    model.loss_cls = LOSSES.build(dict(type="BalancedSoftmax"))
    runner = SimpleNamespace(model=model, train_dataloader=SimpleNamespace(dataset=Dataset()))
    ClassFrequencyHook().before_train(runner)
    assert model.loss_cls.class_counts.tolist() == [6.0, 2.0]
