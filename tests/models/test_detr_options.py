"""DETRHead's convergence options wired together: defaults unchanged,
anchor-box queries, denoising queries (masked from the matching queries),
the sigmoid focal classification, and a few-step training smoke."""
import math

import pytest
import torch

from detr_tiny import SAMPLES, tiny_head

pytestmark = pytest.mark.usefixtures("one_thread")

ANCHOR = dict(type="anchor_box")
DN = dict(num_groups=2, box_noise_scale=0.4, label_noise_ratio=0.2)
FOCAL = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=2.0)

def test_default_is_the_paper_head():
    plain, explicit = tiny_head(), tiny_head(query=dict(type="embedding"), denoising=None)
    assert plain.state_dict().keys() == explicit.state_dict().keys()
    assert "query_embed.weight" in plain.state_dict()
    assert not any(k.startswith(("anchor_queries", "denoising")) for k in plain.state_dict())
    assert plain.class_embed.out_features == 4 and not plain.use_sigmoid
    feats = [torch.randn(2, 8, 4, 4)]
    cls_a, box_a = plain(feats)
    cls_b, box_b = explicit(feats)
    assert torch.equal(cls_a, cls_b) and torch.equal(box_a, box_b)


def test_option_errors():
    with pytest.raises(ValueError, match="anchor_box"):
        tiny_head(denoising=DN)
    with pytest.raises(ValueError, match="query type"):
        tiny_head(query=dict(type="pattern"))
    with pytest.raises(Exception, match="init_wh"):
        tiny_head(query=dict(type="anchor_box", init_wh=2.0))


def test_anchor_queries_shapes_and_initial_boxes():
    head = tiny_head(query=ANCHOR)
    assert "query_embed.weight" not in head.state_dict()
    cls, boxes = head([torch.randn(2, 8, 4, 4)])
    assert cls.shape == (2, 2, 4, 4) and boxes.shape == (2, 2, 4, 4)
    # the box head's last layer starts at zero: every layer predicts the anchors
    anchors = head.anchor_queries.anchor_logits().sigmoid()
    assert torch.allclose(boxes, anchors.expand_as(boxes), atol=1e-5)


def test_denoising_queries_do_not_change_matching_outputs():
    head = tiny_head(query=ANCHOR, denoising=DN)
    feat = torch.randn(2, 8, 4, 4)
    mask = head.padding_mask(feat, [s.metainfo for s in SAMPLES])
    pos = head.positional_encoding(mask)
    src = head.input_proj(feat)
    targets = head._targets(SAMPLES, "cpu")
    dn = head.denoising(targets, head.num_queries)
    cls, boxes, (dn_cls, dn_boxes) = head._anchor_forward(src, mask, pos, dn)
    ref_cls, ref_boxes, none = head._anchor_forward(src, mask, pos, None)
    assert none is None and dn_cls.shape == (2, 2, 4, 4) and dn_boxes.shape == (2, 2, 4, 4)
    # the mask keeps the matching queries blind to the denoising ones
    assert torch.allclose(cls, ref_cls, atol=1e-5) and torch.allclose(boxes, ref_boxes, atol=1e-5)
    losses = head.loss([feat], SAMPLES)
    expected = {f"{p}{d}{k}" for p in ("", "d0.") for d in ("", "dn.")
                for k in ("loss_cls", "loss_bbox", "loss_iou")}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())


def test_denoising_box_loss_by_hand():
    head = tiny_head(query=ANCHOR, denoising=dict(num_groups=1, box_noise_scale=0.0,
                                                  label_noise_ratio=0.0))
    targets = head._targets(SAMPLES, "cpu")
    dn = head.denoising(targets, head.num_queries)
    gt = torch.stack([targets[0][1][0], targets[0][1][1], targets[1][1][0], targets[1][1][0]])
    dn_boxes = gt.reshape(2, 2, 4)[None].clone()
    dn_boxes[0, 0, 0, 0] += 0.1  # image 0, slot 0: cx off by 0.1
    dn_cls = torch.zeros(1, 2, 2, 4)
    losses = head.denoising_losses(dn_cls, dn_boxes, dn, targets)
    # 3 valid slots (image 1's slot 1 is padding, and would add |gt - gt| = 0 anyway)
    assert losses["dn.loss_bbox"].item() == pytest.approx(5 * 0.1 / 3, rel=1e-4)
    # CE over the 3 valid slots of uniform logits: log(4)
    assert losses["dn.loss_cls"].item() == pytest.approx(math.log(4), rel=1e-5)


def test_focal_classification_and_decoding():
    head = tiny_head(loss_cls=FOCAL, matcher=dict(cost_class=2.0))
    assert head.use_sigmoid and head.class_embed.out_features == 3
    assert head.matcher.class_cost == "focal"
    assert torch.allclose(head.class_embed.bias.sigmoid(), torch.full((3,), 0.01), atol=1e-6)
    feat = [torch.randn(2, 8, 4, 4)]
    losses = head.loss(feat, SAMPLES)
    assert torch.isfinite(losses["loss_cls"])
    results = head.predict(feat, SAMPLES)
    cls, _ = head(feat, [s.metainfo for s in SAMPLES])
    top = cls[-1, 0].sigmoid().flatten().topk(12).values
    assert torch.allclose(results[0].scores, top) and results[0].labels.max() < 3


def test_few_step_training_smoke():
    head = tiny_head(query=ANCHOR, denoising=DN, loss_cls=FOCAL)
    backbone = torch.nn.Conv2d(3, 8, 8, stride=8)
    params = list(head.parameters()) + list(backbone.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    images = torch.randn(2, 3, 32, 32)
    totals = []
    for _ in range(40):
        losses = head.loss([backbone(images)], SAMPLES)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert sum(totals[-5:]) < 0.7 * sum(totals[:5])
    assert all(p.grad is not None for p in head.anchor_queries.parameters())
    assert head.denoising.label_embed.weight.grad.abs().sum() > 0
