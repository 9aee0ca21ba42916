"""DN-DETR denoising queries: the attention mask worked by hand, the box
and label noise ranges, shapes and padding of a batch."""
import pytest
import torch

from toolbox.models.layers.detr_anchor_queries import inverse_sigmoid
from toolbox.models.layers.detr_denoising import (DenoisingQueries, denoising_attn_mask,
                                                  noise_boxes, noise_labels)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_attn_mask_by_hand():
    # 2 groups of 2 denoising queries (d0 d1 | d2 d3), then 3 matching queries m0..m2.
    # Row = the query attending, column = the key; 1 = blocked.
    expected = torch.tensor([
        # d0 d1 d2 d3 m0 m1 m2
        [0, 0, 1, 1, 0, 0, 0],  # d0: own group + matching
        [0, 0, 1, 1, 0, 0, 0],  # d1
        [1, 1, 0, 0, 0, 0, 0],  # d2: own group + matching
        [1, 1, 0, 0, 0, 0, 0],  # d3
        [1, 1, 1, 1, 0, 0, 0],  # m0: matching only
        [1, 1, 1, 1, 0, 0, 0],  # m1
        [1, 1, 1, 1, 0, 0, 0],  # m2
    ], dtype=torch.bool)
    assert torch.equal(denoising_attn_mask(2, 2, 3), expected)
    # one group: only the matching -> denoising block is masked
    one = denoising_attn_mask(1, 2, 1)
    assert one.tolist() == [[False, False, False], [False, False, False], [True, True, False]]


def test_box_noise_range():
    torch.manual_seed(0)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]]).repeat(2000, 1)
    noised = noise_boxes(boxes, 0.4)
    # centre within +- 0.4 * w / 2 = 0.04 (x), 0.4 * h / 2 = 0.08 (y); sizes within +- 40 %
    assert (noised[:, 0] - 0.5).abs().max() <= 0.04 + 1e-6
    assert (noised[:, 1] - 0.5).abs().max() <= 0.08 + 1e-6
    assert noised[:, 2].min() >= 0.12 - 1e-6 and noised[:, 2].max() <= 0.28 + 1e-6
    assert noised[:, 3].min() >= 0.24 - 1e-6 and noised[:, 3].max() <= 0.56 + 1e-6
    # the range is used (uniform noise, not a constant)
    assert (noised[:, 0] - 0.5).abs().max() > 0.035
    # clipped to [0, 1]; no noise leaves the boxes alone
    edge = noise_boxes(torch.tensor([[0.99, 0.01, 0.5, 0.5]]).repeat(100, 1), 0.4)
    assert edge.min() >= 0 and edge.max() <= 1
    assert torch.equal(noise_boxes(boxes[:3], 0.0), boxes[:3])


def test_label_noise_ratio():
    torch.manual_seed(0)
    labels = torch.zeros(20000, dtype=torch.long)
    noised = noise_labels(labels, num_classes=5, ratio=0.5)
    assert noised.min() >= 0 and noised.max() < 5
    # flipped with p 0.5 to a uniform class (which is 0 again 1 time in 5): 40 % change
    assert (noised != 0).float().mean().item() == pytest.approx(0.4, abs=0.02)
    assert torch.equal(noise_labels(labels, 5, 0.0), labels)


def test_batch_shapes_and_padding():
    torch.manual_seed(0)
    dn = DenoisingQueries(num_classes=3, d_model=8, num_groups=3, box_noise_scale=0.0,
                          label_noise_ratio=0.0)
    boxes_a = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.3]])
    targets = [(torch.tensor([2, 0]), boxes_a), (torch.tensor([1]), boxes_a[1:])]
    out = dn(targets, num_queries=4)
    assert out.group_size == 2 and out.num_dn == 6
    assert out.content.shape == (6, 2, 8) and out.ref_logits.shape == (6, 2, 4)
    assert out.attn_mask.shape == (10, 10)
    # image 1 has one box: slot 1 of each group is padding
    assert out.valid.tolist() == [[True] * 6, [True, False] * 3]
    assert out.gt_index.tolist() == [[0, 1] * 3, [0, -1] * 3]
    # without noise the anchors are the gt boxes and the content the label embedding
    assert torch.allclose(out.ref_logits[2:4, 0].sigmoid(), boxes_a, atol=1e-5)
    assert torch.allclose(out.content[4, 0], dn.label_embed.weight[2])
    assert torch.allclose(out.ref_logits[:, 0], inverse_sigmoid(boxes_a).repeat(3, 1))
    assert dn([(torch.zeros(0, dtype=torch.long), torch.zeros(0, 4))], 4) is None
    with pytest.raises(ValueError, match="num_groups"):
        DenoisingQueries(3, 8, num_groups=0)
