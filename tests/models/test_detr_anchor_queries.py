"""DAB-DETR anchor-box queries: the box sine embedding against a hand
case, the anchors' initialisation, and iterative refinement in the decoder."""
import math

import pytest
import torch

from toolbox.models.layers.detr_anchor_queries import (AnchorBoxQueries, box_sine_embedding,
                                                       inverse_sigmoid)
from toolbox.models.layers.detr_transformer import DETRTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_box_sine_embedding_by_hand():
    box = torch.tensor([0.25, 0.5, 0.1, 1.0])
    emb = box_sine_embedding(box, num_feats=4, temperature=100.0)
    assert emb.shape == (16,)
    for j, c in enumerate(box.tolist()):
        p = c * 2 * math.pi
        # frequencies 1, 1, 1/10, 1/10 (T^(2 * floor(i / 2) / 4) with T = 100)
        expected = [math.sin(p), math.cos(p), math.sin(p / 10), math.cos(p / 10)]
        assert emb[4 * j:4 * j + 4].tolist() == pytest.approx(expected, abs=1e-6)
    assert box_sine_embedding(torch.rand(3, 5, 4), 8).shape == (3, 5, 32)


def test_inverse_sigmoid_roundtrip_and_clamp():
    x = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(inverse_sigmoid(x).sigmoid(), x, atol=1e-6)
    assert torch.isfinite(inverse_sigmoid(torch.tensor([0.0, 1.0]))).all()


def test_anchor_init_and_random_xy():
    torch.manual_seed(0)
    q = AnchorBoxQueries(num_queries=50, d_model=16, init_wh=0.2)
    anchors = q.anchor_logits().sigmoid()
    assert anchors.shape == (50, 4)
    assert torch.allclose(anchors[:, 2:], torch.full((50, 2), 0.2), atol=1e-5)
    assert anchors[:, :2].min() >= 0 and anchors[:, :2].max() <= 1
    fixed = AnchorBoxQueries(4, 16, random_xy=True)
    fixed.anchor_logits().sum().backward()
    assert torch.all(fixed.anchors.grad[:, :2] == 0) and torch.all(fixed.anchors.grad[:, 2:] == 1)


def test_decode_refines_boxes_layer_by_layer():
    torch.manual_seed(0)
    tr = DETRTransformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=3,
                         dim_feedforward=32, dropout=0.0).eval()
    q = AnchorBoxQueries(num_queries=5, d_model=16)
    src, pos = torch.randn(2, 16, 3, 4), torch.randn(2, 16, 3, 4)
    memory, mask, pos_seq = tr.encode(src, torch.zeros(2, 3, 4, dtype=torch.bool), pos)
    assert memory.shape == (12, 2, 16) and mask.shape == (2, 12)
    ref = q.anchor_logits()[:, None].expand(-1, 2, -1)
    tgt = torch.zeros(5, 2, 16)
    zero_head = torch.nn.Linear(16, 4)
    torch.nn.init.zeros_(zero_head.weight)
    torch.nn.init.zeros_(zero_head.bias)
    hs, boxes = q.decode(tr.decoder, tgt, ref, memory, mask, pos_seq, zero_head)
    assert hs.shape == (3, 2, 5, 16) and boxes.shape == (3, 2, 5, 4)
    # a zero offset head keeps every layer's boxes at the anchors
    anchors = q.anchor_logits().sigmoid()
    assert torch.allclose(boxes, anchors.expand(3, 2, 5, 4), atol=1e-5)
    # a constant offset of +1 logit accumulates over the layers
    one_head = torch.nn.Linear(16, 4)
    torch.nn.init.zeros_(one_head.weight)
    torch.nn.init.ones_(one_head.bias)
    _, boxes = q.decode(tr.decoder, tgt, ref, memory, mask, pos_seq, one_head)
    for layer in range(3):
        expected = (inverse_sigmoid(anchors) + layer + 1).sigmoid()
        assert torch.allclose(boxes[layer, 0], expected, atol=1e-4)


def test_sine_cross_attention_query_matches_the_memory_encoding():
    """Conditional DETR's spatial query of an anchor centred on a cell equals
    that cell's SinePositionalEncoding (so q . k is a spatial kernel)."""
    from toolbox.models.layers.positional_encoding import SinePositionalEncoding
    pe = SinePositionalEncoding(8)(torch.zeros(1, 4, 5, dtype=torch.bool))  # [1, 16, 4, 5]
    centre = torch.tensor([[4 / 5, 3 / 4, 0.1, 0.1]])  # row 2, column 3 (cumulative 3/4, 4/5)
    query = box_sine_embedding(centre[..., [1, 0, 1, 0]], 8)[..., :16]
    assert torch.allclose(query[0], pe[0, :, 2, 3], atol=1e-6)
    # the decoder runs with it, and differs from the default 'mlp' positional query
    torch.manual_seed(0)
    tr = DETRTransformer(d_model=16, nhead=2, num_encoder_layers=0, num_decoder_layers=2,
                         dim_feedforward=32, dropout=0.0)
    memory, mask, pos = tr.encode(torch.randn(1, 16, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool),
                                  torch.randn(1, 16, 2, 2))
    outs = []
    for kind in ("mlp", "sine"):
        torch.manual_seed(1)
        q = AnchorBoxQueries(3, 16, cross_attn_pos=kind)
        ref = q.anchor_logits()[:, None]
        outs.append(q.decode(tr.decoder, torch.zeros(3, 1, 16), ref, memory, mask, pos,
                             torch.nn.Linear(16, 4))[0])
    assert outs[0].shape == outs[1].shape and not torch.allclose(outs[0], outs[1])
    with pytest.raises(ValueError, match="cross_attn_pos"):
        AnchorBoxQueries(3, 16, cross_attn_pos="concat")
