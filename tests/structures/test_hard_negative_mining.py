import pytest
import torch

from toolbox.structures.hard_negative_mining import hard_negative_mining


def test_three_negatives_per_positive_hardest_first():
    # Hand case: anchors 1 and 9 are positives; of the other eight, the six
    # (= 3 x 2 positives) with the largest loss are 4 (0.8), 6 (0.7), 8 (0.6),
    # 2 (0.5), 7 (0.4) and 3 (0.3); 0 (0.1) and 5 (0.2) are dropped.
    loss = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4, 0.6, 0.05])
    pos = torch.zeros(10, dtype=torch.bool)
    pos[[1, 9]] = True
    neg = hard_negative_mining(loss, pos, neg_pos_ratio=3)
    assert neg.nonzero().flatten().tolist() == [2, 3, 4, 6, 7, 8]
    assert not (neg & pos).any()


def test_per_image_budget_candidates_and_empty_images():
    loss = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0],    # 1 positive, 2 candidates only
                         [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],    # 1 positive, ratio 1.5 -> 1
                         [9.0, 9.0, 9.0, 9.0, 9.0, 9.0]])   # no positive -> no negative
    pos = torch.tensor([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]]).bool()
    candidates = torch.tensor([[1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]).bool()
    neg = hard_negative_mining(loss, pos, candidates, neg_pos_ratio=1.5)
    # row 0: the positive (also marked candidate) is never a negative; of the
    # candidates 2 (loss 3) and 4 (loss 1), floor(1.5 * 1) = 1 is kept: index 2.
    assert neg[0].nonzero().flatten().tolist() == [2]
    assert neg[1].nonzero().flatten().tolist() == [4]  # hardest non-positive
    assert not neg[2].any()
    # with ratio 3 row 0 has budget 3 but only two candidates: both are taken
    neg = hard_negative_mining(loss, pos, candidates, neg_pos_ratio=3)
    assert neg[0].nonzero().flatten().tolist() == [2, 4]
    assert neg[1].nonzero().flatten().tolist() == [2, 3, 4]


def test_ties_keep_the_lower_index_and_bad_input_is_named():
    neg = hard_negative_mining(torch.ones(6), torch.tensor([1, 0, 0, 0, 0, 0]).bool(),
                               neg_pos_ratio=2)
    assert neg.nonzero().flatten().tolist() == [1, 2]
    with pytest.raises(ValueError, match="'pos'"):
        hard_negative_mining(torch.ones(4), torch.ones(4))
    with pytest.raises(ValueError, match="'loss'"):
        hard_negative_mining(torch.ones(2, 2, 2), torch.ones(2, 2, 2).bool())
    with pytest.raises(ValueError, match="neg_candidates"):
        hard_negative_mining(torch.ones(4), torch.zeros(4).bool(), torch.ones(3).bool())
    with pytest.raises(ValueError, match="neg_pos_ratio"):
        hard_negative_mining(torch.ones(4), torch.zeros(4).bool(), neg_pos_ratio=-1)
