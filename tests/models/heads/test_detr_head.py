"""DETRHead: Hungarian loss values and no-object weighting on hand cases,
aux losses, DDP normalisation, decoding to original image coordinates."""
import math

import pytest
import torch
from mmengine.structures import InstanceData

from toolbox.models.heads import detr_head
from toolbox.registry import HEADS
from toolbox.structures import DetDataSample, boxes_to_original

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_head(**kw):
    cfg = dict(type="DETRHead", num_classes=1, in_channels=8, embed_dims=16, num_queries=2,
               transformer=dict(nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                                dim_feedforward=32, dropout=0.0))
    cfg.update(kw)
    return HEADS.build(cfg)


def sample(boxes, labels, img_shape=(100, 200), **meta):
    s = DetDataSample(metainfo=dict(img_shape=img_shape, ori_shape=img_shape,
                                    batch_input_shape=img_shape, **meta))
    s.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                  labels=torch.tensor(labels, dtype=torch.long))
    return s


# One gt box [20, 10, 60, 50] in a 100 x 200 (h x w) image: normalised cx, cy,
# w, h = (0.2, 0.3, 0.2, 0.4). Query 0 is off by 0.05 in cx, logits (2, 0);
# query 1 is elsewhere with logits (0, 1) and must be "no object".
CLS = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
BOXES = torch.tensor([[[0.25, 0.3, 0.2, 0.4], [0.8, 0.8, 0.1, 0.1]]])
A = math.log(1 + math.exp(-2))  # -log softmax((2, 0))[0]
B = math.log(1 + math.exp(-1))  # -log softmax((0, 1))[1]


def test_loss_values_by_hand():
    head = tiny_head()
    losses = head.loss_single(CLS, BOXES, head._targets([sample([20, 10, 60, 50], [0])], "cpu"),
                              num_boxes=1.0)
    # CE: weighted mean, weights 1 (matched) and eos_coef 0.1 (no object)
    assert losses["loss_cls"].item() == pytest.approx((A + 0.1 * B) / 1.1, rel=1e-5)
    # L1: |0.25 - 0.2| over 4 coordinates / 1 box, times 5
    assert losses["loss_bbox"].item() == pytest.approx(5 * 0.05, rel=1e-5)
    # GIoU: [0.15, 0.1, 0.35, 0.5] vs [0.1, 0.1, 0.3, 0.5]: inter 0.06, union 0.1,
    # hull 0.1 -> GIoU 0.6, loss 2 * (1 - 0.6)
    assert losses["loss_iou"].item() == pytest.approx(2 * 0.4, rel=1e-5)


def test_no_object_weighting():
    targets = [tiny_head()._targets([sample([20, 10, 60, 50], [0])], "cpu")][0]
    plain = tiny_head(eos_coef=1.0).loss_single(CLS, BOXES, targets, 1.0)["loss_cls"]
    assert plain.item() == pytest.approx((A + B) / 2, rel=1e-5)
    # gradient on the unmatched query's logits is scaled by eos_coef / sum of weights
    logits = CLS.clone().requires_grad_(True)
    tiny_head(eos_coef=0.1).loss_single(logits, BOXES, targets, 1.0)["loss_cls"].backward()
    p = torch.softmax(CLS[0, 1], -1)
    expected = 0.1 / 1.1 * (p - torch.tensor([0.0, 1.0]))
    assert torch.allclose(logits.grad[0, 1], expected, atol=1e-6)
    with pytest.raises(ValueError, match="eos_coef"):
        tiny_head(eos_coef=1.5)


def test_aux_losses_and_box_normalisation():
    head = tiny_head()
    samples = [sample([20, 10, 60, 50], [0]),
               sample([[0, 0, 50, 50], [10, 10, 30, 30]], [0, 0], img_shape=(50, 50))]
    all_cls = torch.zeros(3, 2, 2, 2)
    all_boxes = torch.full((3, 2, 2, 4), 0.5)
    losses = head.loss_by_feat(all_cls, all_boxes, samples)
    assert set(losses) == {f"{p}{k}" for p in ("", "d0.", "d1.")
                           for k in ("loss_cls", "loss_bbox", "loss_iou")}
    # image 2's boxes normalised by its own 50 x 50 img_shape: (0.5, 0.5, 1, 1) and
    # (0.4, 0.4, 0.4, 0.4); image 1's (0.2, 0.3, 0.2, 0.4). L1 to 0.5 everywhere:
    l1 = (0.3 + 0.2 + 0.3 + 0.1) + (0 + 0 + 0.5 + 0.5) + (0.1 + 0.1 + 0.1 + 0.1)
    assert losses["loss_bbox"].item() == pytest.approx(5 * l1 / 3, rel=1e-5)
    assert not tiny_head(aux_loss=False).loss_by_feat(all_cls, all_boxes, samples).keys() \
        - {"loss_cls", "loss_bbox", "loss_iou"}


def test_num_boxes_is_averaged_over_ranks(monkeypatch):
    """Under DDP the box count is all-reduced and divided by the world size."""
    head = tiny_head()
    targets = head._targets([sample([[0, 0, 10, 10]] * 3, [0, 0, 0])], "cpu")
    monkeypatch.setattr(detr_head.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(detr_head.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(detr_head.dist, "all_reduce", lambda t: t.add_(5.0))  # other rank: 5
    assert head._num_boxes(targets, "cpu") == 4.0


def test_forward_shapes_and_empty_ground_truth():
    head = tiny_head()
    feat = torch.randn(2, 8, 3, 4)
    cls, boxes = head([feat])
    assert cls.shape == (2, 2, 2, 2) and boxes.shape == (2, 2, 2, 4)
    assert ((boxes > 0) & (boxes < 1)).all()
    losses = head.loss([feat], [sample([], []), sample([], [])])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert head.bbox_embed.layers[0].weight.grad is not None  # still in the graph


def test_padding_mask_from_img_shape():
    feat = torch.zeros(2, 1, 4, 6)  # a 128 x 192 batch at stride 32
    metas = [dict(img_shape=(128, 192), batch_input_shape=(128, 192)),
             dict(img_shape=(70, 100), batch_input_shape=(128, 192))]
    mask = detr_head.DETRHead.padding_mask(feat, metas)
    assert not mask[0].any()
    # 70 px cover rows 0..2 (ceil(70 / 32) = 3), 100 px cover columns 0..3
    assert (~mask[1]).nonzero().max(0).values.tolist() == [2, 3]
    assert mask[1].sum() == 24 - 12


def test_predict_scores_and_original_coordinates():
    head = tiny_head(num_classes=2, num_queries=2, test_cfg=dict(max_per_img=3))
    cls = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 0.0, 5.0]]])
    boxes = torch.tensor([[[0.2, 0.3, 0.2, 0.4], [0.5, 0.5, 0.2, 0.2]]])
    meta = dict(img_shape=(100, 200), ori_shape=(200, 400), scale_factor=(0.5, 0.5), flip=True,
                flip_direction="horizontal")
    result = head.predict_by_feat(cls, boxes, [meta])[0]  # img_shape coordinates
    result.bboxes = boxes_to_original(result.bboxes, meta)  # what the detector does
    probs = torch.softmax(cls[0], -1)[:, :2]  # no-object dropped
    top = probs.flatten().topk(3)
    assert torch.allclose(result.scores, top.values)
    assert result.labels.tolist() == (top.indices % 2).tolist()
    # query 0 in img_shape: [20, 10, 60, 50]; unflip in w = 200: [140, 10, 180, 50];
    # / 0.5: [280, 20, 360, 100]
    assert torch.allclose(result.bboxes[0], torch.tensor([280.0, 20.0, 360.0, 100.0]), atol=1e-4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_classes"):
        tiny_head(num_classes=0)
    with pytest.raises(ValueError, match="d_model"):
        tiny_head(transformer=dict(nhead=3))
    with pytest.raises(ValueError, match="in_channels"):
        tiny_head()([torch.zeros(1, 5, 2, 2)])
    with pytest.raises(ValueError, match="labels"):
        tiny_head().loss([torch.zeros(1, 8, 2, 2)], [sample([0, 0, 5, 5], [3])])


def test_transformer_and_positional_encoding_swap_by_config():
    from toolbox.models.layers.detr_transformer import DETRTransformer
    from toolbox.models.layers.positional_encoding import LearnedPositionalEncoding
    custom = DETRTransformer(d_model=16, nhead=4, num_encoder_layers=0, num_decoder_layers=3,
                             dim_feedforward=8)
    head = tiny_head(transformer=custom, positional_encoding=dict(type="learned"))
    assert head.transformer is custom
    assert isinstance(head.positional_encoding, LearnedPositionalEncoding)
    cls, boxes = head([torch.randn(1, 8, 3, 3)])
    assert cls.shape == (3, 1, 2, 2)  # one output per decoder layer


def test_nearest_padding_mask_is_the_official_rule():
    # the official DETR / HF: F.interpolate(pixel mask, size=feature size), nearest
    feat = torch.zeros(2, 1, 22, 3)
    metas = [dict(img_shape=(26, 6), batch_input_shape=(26, 6)),
             dict(img_shape=(13, 4), batch_input_shape=(26, 6))]
    mask = detr_head.DETRHead.nearest_padding_mask(feat, metas)
    pixels = torch.ones(2, 26, 6)
    pixels[0] = 0
    pixels[1, :13, :4] = 0
    expected = torch.nn.functional.interpolate(pixels[None], size=(22, 3))[0].bool()
    assert torch.equal(mask, expected) and not mask[0].any()
    # row 11 samples pixel floor(11 * float32(26 / 22)) = 12 < 13: valid, while
    # 'cover' calls it padding (11 * 26 / 22 = 13 exactly: it starts past the image)
    assert not mask[1, 11, 0] and detr_head.DETRHead.padding_mask(feat, metas)[1, 11, 0]
    head = tiny_head(padding_mask="nearest")
    assert head([torch.zeros(2, 8, 22, 3)], metas)[0].shape == (2, 2, 2, 2)
    with pytest.raises(ValueError, match="padding_mask"):
        tiny_head(padding_mask="ceil")


def test_one_label_per_query_without_clipping():
    head = tiny_head(num_classes=2, num_queries=3,
                     test_cfg=dict(max_per_img=2, one_label_per_query=True, clip_boxes=False))
    cls = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 0.0, 5.0], [0.0, 2.0, 0.0]]])
    boxes = torch.tensor([[[0.1, 0.3, 0.4, 0.4], [0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]])
    meta = dict(img_shape=(100, 200), ori_shape=(200, 400), scale_factor=(0.5, 0.5))
    result = head.predict_by_feat(cls, boxes, [meta])[0]  # img_shape coordinates
    result.bboxes = boxes_to_original(result.bboxes, meta, clip=False)  # as DETR (detector)
    best = torch.softmax(cls[0], -1)[:, :2].max(-1)
    # each query once, its best class; the two best queries (0, then 2), by score
    assert result.labels.tolist() == [0, 1]
    assert torch.allclose(result.scores, best.values[[0, 2]])
    # query 0 reaches past the left border: [-20, 10, 60, 50] / 0.5, not clipped
    assert torch.allclose(result.bboxes[0], torch.tensor([-40.0, 20.0, 120.0, 100.0]), atol=1e-4)
    clipped = tiny_head(num_classes=2, num_queries=3,
                        test_cfg=dict(one_label_per_query=True)).predict_by_feat(cls, boxes, [meta])
    assert clipped[0].bboxes[0, 0] == 0 and len(clipped[0].scores) == 3
