"""EQLv2 (Tan et al., CVPR 2021) against hand-worked cases."""
import io
import math

import pytest
import torch
import torch.nn.functional as F

from toolbox.registry import LOSSES


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def bce(x, y):
    return -math.log(sigmoid(x)) if y else -math.log(1.0 - sigmoid(x))


LOGITS = [[0.5, -1.0],    # label 0
          [-0.3, 0.8],    # label 1
          [0.2, -0.6]]    # label 2 = background: both targets 0
LABELS = [0, 1, 2]
TARGETS = [[1, 0], [0, 1], [0, 0]]


def build(**kw):
    return LOSSES.build(dict(type="EQLv2", **kw))


def test_defaults_are_the_papers():
    loss = build()
    assert (loss.gamma, loss.mu, loss.alpha) == (12.0, 0.8, 4.0)


def test_weights_and_loss_from_a_hand_set_state():
    loss = build(num_classes=2, reduction="sum")
    # class 0: g = 0.8 / 1.0 = 0.8 -> f = 1 / (1 + e^0) = 0.5 -> q = 1 + 4 * 0.5 = 3, r = 0.5
    # class 1: g = 2.0 / 1.0 -> f = 1 / (1 + e^(-12 * 1.2)) = 1 / (1 + e^-14.4)
    loss.pos_grad.copy_(torch.tensor([0.8, 2.0]))
    loss.neg_grad.copy_(torch.tensor([1.0, 1.0]))
    f1 = 1 / (1 + math.exp(-14.4))
    q, r = loss.class_weights()
    assert q.tolist() == pytest.approx([3.0, 1 + 4 * (1 - f1)], rel=1e-6)
    assert r.tolist() == pytest.approx([0.5, f1], rel=1e-6)

    loss.eval()  # keep the state fixed for this check
    pred = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    value = loss(pred, torch.tensor(LABELS))
    value.backward()
    weights = [[q[j].item() if TARGETS[i][j] else r[j].item() for j in range(2)] for i in range(3)]
    # = 3 bce(0.5, 1) + f1 bce(-1.0, 0) + 0.5 bce(-0.3, 0) + q1 bce(0.8, 1)
    #   + 0.5 bce(0.2, 0) + f1 bce(-0.6, 0)
    expected = sum(weights[i][j] * bce(LOGITS[i][j], TARGETS[i][j])
                   for i in range(3) for j in range(2))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    for i in range(3):
        for j in range(2):  # d/dx [w BCE] = w (sigmoid(x) - y)
            hand = weights[i][j] * (sigmoid(LOGITS[i][j]) - TARGETS[i][j])
            assert pred.grad[i, j].item() == pytest.approx(hand, rel=1e-6)


def test_fresh_state_is_plain_bce():
    loss = build()
    pred = torch.tensor(LOGITS)
    one_hot = torch.tensor(TARGETS, dtype=torch.float32)
    ref = F.binary_cross_entropy_with_logits(pred, one_hot)
    assert loss(pred, torch.tensor(LABELS)).item() == pytest.approx(ref.item(), rel=1e-6)
    assert loss.num_classes == 2  # sized by the first batch


def test_accumulation_after_one_step_matches_hand_sums():
    loss = build(reduction="sum")
    loss(torch.tensor(LOGITS, requires_grad=True), torch.tensor(LABELS))
    # weights are 1 before any statistics; |grad| = |sigmoid(x) - y|
    pos = [1 - sigmoid(0.5), 1 - sigmoid(0.8)]
    neg = [sigmoid(-0.3) + sigmoid(0.2), sigmoid(-1.0) + sigmoid(-0.6)]  # bg row adds to both
    assert loss.pos_grad.tolist() == pytest.approx(pos, rel=1e-6)
    assert loss.neg_grad.tolist() == pytest.approx(neg, rel=1e-6)
    q, r = loss.class_weights()
    f = [sigmoid(12 * (p / n - 0.8)) for p, n in zip(pos, neg)]
    assert r.tolist() == pytest.approx(f, rel=1e-5)
    assert q.tolist() == pytest.approx([1 + 4 * (1 - v) for v in f], rel=1e-5)


def test_accumulated_state_equals_autograd_gradient_sums():
    """Over two steps (the second one re-weighted, with sample weights), the
    statistics equal the summed |d loss / d logit| of the 'sum' loss, split
    by positive and negative targets."""
    gen = torch.Generator().manual_seed(0)
    loss = build(reduction="sum")
    pos_total, neg_total = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for step in range(2):
        pred = torch.randn(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
        labels = torch.randint(0, 4, (8,), generator=gen)
        weight = torch.rand(8, generator=gen, dtype=torch.float64) if step else None
        loss(pred, labels, weight=weight).backward()
        one_hot = F.one_hot(labels, 4)[:, :3].to(pred.dtype)
        pos_total += (pred.grad.abs() * one_hot).sum(0)
        neg_total += (pred.grad.abs() * (1 - one_hot)).sum(0)
        assert torch.allclose(loss.pos_grad.double(), pos_total, rtol=1e-5)
        assert torch.allclose(loss.neg_grad.double(), neg_total, rtol=1e-5)


def test_no_accumulation_in_eval_mode_or_without_grad():
    loss = build(num_classes=2)
    pred, labels = torch.tensor(LOGITS), torch.tensor(LABELS)
    with torch.no_grad():
        loss(pred, labels)
    loss.eval()
    loss(pred, labels)
    assert loss.pos_grad.sum() == 0 and loss.neg_grad.sum() == 0


def test_state_survives_save_and_load_with_weights_only():
    loss = build(reduction="sum")
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        loss(torch.randn(16, 4, generator=gen), torch.randint(0, 5, (16,), generator=gen))
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    fresh = build(reduction="sum")  # class count unknown until the load
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for a, b in zip(loss.class_weights(), fresh.class_weights()):
        assert torch.equal(a, b)
    assert not torch.equal(loss.class_weights()[1], torch.ones(4))  # a non-trivial state
    pred, labels = torch.randn(5, 4, generator=gen), torch.tensor([0, 1, 2, 3, 4])
    loss.eval(), fresh.eval()
    assert loss(pred, labels).item() == fresh(pred, labels).item()


def test_bad_inputs():
    with pytest.raises(ValueError, match="pred"):
        build(num_classes=3)(torch.zeros(2, 2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="long class indices"):
        build()(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="num_classes"):
        build(num_classes=0)
    with pytest.raises(RuntimeError, match="num_classes"):
        build().class_weights()
