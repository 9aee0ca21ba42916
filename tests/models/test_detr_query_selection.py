"""DINO mixed query selection: cell proposals by hand, top-k selection
skips padding, and the head's encoder losses."""
import pytest
import torch

from toolbox.models.layers.detr_anchor_queries import inverse_sigmoid
from toolbox.models.layers.detr_query_selection import EncoderQuerySelection, cell_proposals

from detr_tiny import SAMPLES, tiny_head

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cell_proposals_by_hand():
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[0, :, 3] = True  # last column is padding: 3 valid columns, 2 rows
    props = cell_proposals(mask, 0.1).reshape(2, 4, 4)
    assert props[0, 0].tolist() == pytest.approx([0.5 / 3, 0.25, 0.1, 0.1])
    assert props[1, 2].tolist() == pytest.approx([2.5 / 3, 0.75, 0.1, 0.1])


def test_topk_selects_best_valid_tokens():
    torch.manual_seed(0)
    sel = EncoderQuerySelection(d_model=8, num_cls_outputs=2, num_queries=2, sigmoid=True)
    memory = torch.randn(6, 1, 8)  # 2 x 3 tokens
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[0, 1, 2] = True
    with torch.no_grad():  # token score = its first feature (cls head reads feature 0)
        sel.output_proj[0].weight.copy_(torch.eye(8))
        sel.output_proj[0].bias.zero_()
        sel.output_proj[1].weight.fill_(1.0)
        sel.output_proj[1].bias.zero_()
        sel.cls_head.weight.zero_()
        sel.cls_head.weight[:, 0] = 1.0
        sel.cls_head.bias.zero_()
    memory[:, 0, 0] = torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0, 9.0])  # token 5 is padding
    cls, boxes, anchors, content = sel(memory, mask)
    assert cls.shape == (1, 6, 2) and boxes.shape == (1, 6, 4) and anchors.shape == (2, 1, 4)
    props = cell_proposals(mask, 0.1)[0]
    # zero-initialised box head: tokens 3 then 1 (token 5 is padding), at their proposals
    assert torch.allclose(anchors[:, 0].sigmoid(), props[[3, 1]], atol=1e-5)
    assert torch.allclose(boxes[0], props, atol=1e-5)
    assert not anchors.requires_grad and content is None
    sel.content = "token"
    content = sel(memory, mask)[3]
    feats = sel.output_proj(memory.transpose(0, 1))[0]
    assert torch.allclose(content[:, 0], feats[[3, 1]]) and content.requires_grad


def test_head_encoder_losses_and_errors():
    head = tiny_head(query=dict(type="anchor_box"), query_selection=dict(proposal_wh=0.2))
    losses = head.loss([torch.randn(2, 8, 4, 4)], SAMPLES)
    assert {"enc.loss_cls", "enc.loss_bbox", "enc.loss_iou"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    total = sum(losses.values())
    total.backward()
    assert head.query_selection.cls_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="anchor_box"):
        tiny_head(query_selection=dict())
    # one-to-many token loss: 3 gt boxes repeated twice match 6 of the 16 tokens
    many = tiny_head(query=dict(type="anchor_box"), query_selection=dict(gt_repeats=2))
    matched = []
    original = many.matcher.match
    many.matcher.match = lambda *a: matched.append(len(a[2])) or original(*a)
    many.loss([torch.randn(2, 8, 4, 4)], SAMPLES)
    assert matched[-2:] == [4, 2]  # the encoder's matching (last), 2 x the gt of each image
    assert inverse_sigmoid(torch.tensor(0.5)).item() == 0.0
