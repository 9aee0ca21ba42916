"""EQL (Tan et al., CVPR 2020) against hand-worked cases."""
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


# 3 classes seen in 100 training images: f = [0.50, 0.02, 0.00].
# With tail_threshold 0.05, classes 1 and 2 are tail (class 2, never seen, too).
INSTANCES, IMAGES, NUM_IMAGES = [80, 3, 0], [50, 2, 0], 100
LOGITS = [[1.5, 0.3, -0.7],   # label 0: foreground of the head class
          [-0.4, 0.9, 0.2],   # label 1: foreground of a tail class
          [0.6, -1.1, 0.8]]   # label 3: background
LABELS = [0, 1, 3]


def build(**kw):
    loss = LOSSES.build(dict(type="EQL", **kw))
    loss.set_class_frequencies(INSTANCES, IMAGES, num_images=NUM_IMAGES)
    return loss


def test_tail_classes_use_image_frequency():
    loss = build(tail_threshold=0.05)
    assert loss.image_frequency.tolist() == pytest.approx([0.5, 0.02, 0.0])
    assert loss.tail_classes().tolist() == [False, True, True]
    assert build(tail_threshold=0.01).tail_classes().tolist() == [False, False, True]
    assert LOSSES.build(dict(type="EQL")).tail_threshold == pytest.approx(1.76e-3)


def test_value_and_gradients_match_the_hand_case():
    loss = build(tail_threshold=0.05, reduction="sum")
    pred = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    value = loss(pred, torch.tensor(LABELS))
    value.backward()
    # w_ij = 1 - E(r_i) T(f_j) (1 - y_ij); dropped: (0, 1), (0, 2) (sample 0 is
    # foreground, classes 1, 2 are tail negatives) and (1, 2); (1, 1) is the
    # positive of sample 1 and stays; the background row keeps all three.
    dropped = {(0, 1), (0, 2), (1, 2)}
    targets = [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    expected = sum(bce(LOGITS[i][j], targets[i][j])
                   for i in range(3) for j in range(3) if (i, j) not in dropped)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    for i in range(3):
        for j in range(3):
            g = pred.grad[i, j].item()
            if (i, j) in dropped:
                assert g == 0.0  # exactly suppressed
            else:  # d BCE / dx = sigmoid(x) - y
                assert g == pytest.approx(sigmoid(LOGITS[i][j]) - targets[i][j], rel=1e-12)


def test_lambda_zero_is_plain_sigmoid_bce():
    pred = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 3, 1])
    one_hot = F.one_hot(labels, 4)[:, :3].to(pred.dtype)
    for kw, call in [(dict(), dict()), (dict(), dict(avg_factor=2.0)),
                     (dict(reduction="sum"), dict())]:
        eql_pred = pred.clone().requires_grad_()
        ref_pred = pred.clone().requires_grad_()
        eql = build(tail_threshold=0.0, **kw)(eql_pred, labels, **call)
        ref = F.binary_cross_entropy_with_logits(ref_pred, one_hot, reduction="sum")
        ref = ref / call.get("avg_factor", 18 if not kw else 1)  # 'mean' over 6 * 3 terms
        eql.backward()
        ref.backward()
        assert eql.item() == pytest.approx(ref.item(), rel=1e-6)
        assert torch.allclose(eql_pred.grad, ref_pred.grad, rtol=1e-6, atol=0)


def test_sample_weight_and_loss_weight():
    loss = build(tail_threshold=0.05, reduction="sum", loss_weight=2.0)
    pred = torch.tensor(LOGITS)
    # weight 0 on sample 0: only rows 1 and 2 remain (row 1 without class 2)
    value = loss(pred, torch.tensor(LABELS), weight=torch.tensor([0.0, 1.0, 1.0]))
    expected = bce(-0.4, 0) + bce(0.9, 1) + bce(0.6, 0) + bce(-1.1, 0) + bce(0.8, 0)
    assert value.item() == pytest.approx(2.0 * expected, rel=1e-5)


def test_errors_name_what_is_missing():
    fresh = LOSSES.build(dict(type="EQL"))
    with pytest.raises(RuntimeError, match="ClassFrequencyHook"):
        fresh(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="num_images"):
        fresh.set_class_frequencies(INSTANCES, IMAGES)
    with pytest.raises(ValueError, match="num_images"):
        fresh.set_class_frequencies(INSTANCES, IMAGES, num_images=10)  # < 50 images of class 0
    with pytest.raises(ValueError, match="image_counts"):
        fresh.set_class_frequencies(INSTANCES, [1, -1, 0], num_images=10)
    with pytest.raises(ValueError, match="instance_counts"):
        fresh.set_class_frequencies([1, 2], IMAGES, num_images=100)
    loss = build()
    with pytest.raises(ValueError, match="3"):
        loss(torch.zeros(2, 4), torch.tensor([0, 4]))  # 4 classes predicted, 3 counted
    with pytest.raises(ValueError, match="long class indices"):
        loss(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="tail_threshold"):
        LOSSES.build(dict(type="EQL", tail_threshold=2.0))


def test_frequencies_survive_a_checkpoint_round_trip():
    loss = build(tail_threshold=0.05)
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = LOSSES.build(dict(type="EQL", tail_threshold=0.05))  # frequencies not set
    fresh.load_state_dict(state)
    assert torch.equal(fresh.image_frequency, loss.image_frequency)
    pred, labels = torch.tensor(LOGITS), torch.tensor(LABELS)
    assert fresh(pred, labels).item() == loss(pred, labels).item()
