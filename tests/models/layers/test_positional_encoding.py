"""DETR's 2D positional encodings: values worked by hand, padding behaviour."""
import math

import pytest
import torch

from toolbox.models.layers.positional_encoding import (LearnedPositionalEncoding,
                                                       SinePositionalEncoding,
                                                       build_positional_encoding)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sine_values_by_hand():
    # 2 x 4 valid map, 4 channels per axis, T = 100: dim_t = 100^(0, 0, 1/2, 1/2) = (1, 1, 10, 10)
    enc = SinePositionalEncoding(num_feats=4, temperature=100.0, normalize=True, eps=0.0)
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    pos = enc(mask)
    assert pos.shape == (1, 8, 2, 4)
    # cell (row 0, col 2): y = 1/2 * 2pi = pi, x = 3/4 * 2pi = 3pi/2
    y, x = math.pi, 1.5 * math.pi
    expected = [math.sin(y), math.cos(y), math.sin(y / 10), math.cos(y / 10),
                math.sin(x), math.cos(x), math.sin(x / 10), math.cos(x / 10)]
    assert torch.allclose(pos[0, :, 0, 2], torch.tensor(expected), atol=1e-6)
    # the last cell: y = x = 2 pi
    t = 2 * math.pi
    expected = [math.sin(t), math.cos(t), math.sin(t / 10), math.cos(t / 10)] * 2
    assert torch.allclose(pos[0, :, 1, 3], torch.tensor(expected), atol=1e-6)


def test_sine_without_normalisation_uses_cell_counts():
    enc = SinePositionalEncoding(num_feats=2, temperature=10000.0, normalize=False)
    pos = enc(torch.zeros(1, 3, 3, dtype=torch.bool))
    # dim_t = (1, 1): channels are sin(y), cos(y), sin(x), cos(x) with 1-based y, x
    assert torch.allclose(pos[0, :, 2, 1], torch.tensor([math.sin(3), math.cos(3),
                                                         math.sin(2), math.cos(2)]), atol=1e-6)


def test_sine_is_normalised_to_the_valid_region():
    """An image padded in a batch gets the encoding it gets alone."""
    enc = SinePositionalEncoding(num_feats=8)
    alone = enc(torch.zeros(1, 3, 5, dtype=torch.bool))
    mask = torch.ones(1, 6, 7, dtype=torch.bool)
    mask[0, :3, :5] = False
    padded = enc(mask)
    assert torch.allclose(padded[0, :, :3, :5], alone[0], atol=1e-6)
    assert not torch.allclose(enc(torch.zeros(1, 6, 7, dtype=torch.bool))[0, :, :3, :5], alone[0])


def test_learned_encoding_layout_and_build():
    enc = build_positional_encoding(dict(type="learned", row_num_embed=4, col_num_embed=5), 3)
    assert isinstance(enc, LearnedPositionalEncoding)
    pos = enc(torch.zeros(2, 3, 4, dtype=torch.bool))
    assert pos.shape == (2, 6, 3, 4)
    assert torch.equal(pos[1, :3, 2, 1], enc.row_embed.weight[2])  # y first
    assert torch.equal(pos[1, 3:, 2, 1], enc.col_embed.weight[1])
    pos.sum().backward()
    assert enc.row_embed.weight.grad is not None
    assert isinstance(build_positional_encoding(None or dict(), 4), SinePositionalEncoding)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="num_feats"):
        SinePositionalEncoding(num_feats=3)
    with pytest.raises(ValueError, match="mask"):
        SinePositionalEncoding()(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="row_num_embed"):
        LearnedPositionalEncoding(4, 2, 2)(torch.zeros(1, 3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="'sine' or 'learned'"):
        build_positional_encoding(dict(type="cosine"), 4)
