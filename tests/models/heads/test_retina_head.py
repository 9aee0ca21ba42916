import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from toolbox.errors import ConfigArgumentError
from toolbox.models.backbones.base import Backbone
from toolbox.models.heads.parts import flatten_levels
from toolbox.structures import boxes_to_original
from toolbox.registry import HEADS, LOSSES

from one_image import GT_BOX, GT_LABEL, feats, image, sample

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: ~30x faster on 1 thread


class TinyStrideBackbone(Backbone):
    """Stand-in backbone: two 16-channel maps at strides 8 and 16."""

    def __init__(self, width=16):
        super().__init__()

        def conv(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.ReLU())

        self.stem = nn.Sequential(conv(3, width), conv(width, width), conv(width, width))
        self.down = conv(width, width)
        self.out_channels, self.out_strides, self.size_divisor = (width, width), (8, 16), 16

    def forward(self, x):
        c3 = self.stem(x)
        return c3, self.down(c3)


class RecordingLoss(nn.Module):
    """A classification loss that records what the head passes to it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, pred, target, weight=None, avg_factor=None):
        self.calls.append((pred.detach(), target.clone(), weight, avg_factor))
        return pred.sum() * 0.0


def tiny_head(**kw):
    cfg = dict(type="RetinaHead", num_classes=3, in_channels=16, feat_channels=32,
               stacked_convs=2, strides=(8, 16))
    cfg.update(kw)
    return HEADS.build(cfg)


def test_forward_shapes_and_prior_bias():
    head = tiny_head()
    cls, reg = head(feats())
    assert [c.shape for c in cls] == [(2, 27, 8, 8), (2, 27, 4, 4)]  # 9 anchors x 3 classes
    assert [r.shape for r in reg] == [(2, 36, 8, 8), (2, 36, 4, 4)]
    assert torch.sigmoid(head.retina_cls.bias).allclose(torch.tensor(0.01))
    with pytest.raises(ValueError, match="3 feature maps"):
        head(feats() + [torch.zeros(2, 16, 2, 2)])


def test_forward_matches_torchvision_retinanet_head():
    """Same weights in torchvision's RetinaNetHead give the same logits and
    deltas, flattened in the same (level, y, x, anchor) order."""
    from torchvision.models.detection.retinanet import RetinaNetHead

    reference = RetinaNetHead(in_channels=16, num_anchors=9, num_classes=3).eval()
    head = tiny_head(feat_channels=16, stacked_convs=4).eval()
    mapping = {"classification_head.conv.": "cls_convs.", "regression_head.conv.": "reg_convs.",
               "classification_head.cls_logits.": "retina_cls.",
               "regression_head.bbox_reg.": "retina_reg."}
    state = {}
    for key, value in reference.state_dict().items():
        for old, new in mapping.items():
            if key.startswith(old):
                key = new + key[len(old):].replace(".0.", ".conv.", 1)
        state[key] = value
    head.load_state_dict(state, strict=True)
    x = feats()
    with torch.no_grad():
        cls, reg = head(x)
        want = reference(x)
    torch.testing.assert_close(flatten_levels(cls, 3), want["cls_logits"])
    torch.testing.assert_close(flatten_levels(reg, 4), want["bbox_regression"])


def test_full_size_parameter_count_matches_torchvision():
    from torchvision.models.detection.retinanet import RetinaNetHead

    ours = HEADS.build(dict(type="RetinaHead", num_classes=80, in_channels=256))
    reference = RetinaNetHead(in_channels=256, num_anchors=9, num_classes=80)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == 6_463_220


def test_loss_is_finite_and_zero_gt_images_only_have_negatives():
    head = tiny_head()
    samples = [sample([GT_BOX], [GT_LABEL]), sample([], [])]
    losses = head.loss(feats(), samples)
    assert set(losses) == {"loss_cls", "loss_bbox"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    empty = head.loss(feats(1), [sample([], [])])
    assert empty["loss_cls"] > 0 and empty["loss_bbox"] == 0
    (empty["loss_cls"] + empty["loss_bbox"]).backward()
    assert head.retina_cls.weight.grad.abs().sum() > 0
    assert head.retina_reg.weight.grad is not None  # still in the graph (DDP)


def test_targets_ignore_regions_and_padding():
    head = tiny_head()
    sizes = [(8, 8), (4, 4)]
    anchors = torch.cat(head.prior_generator.grid_anchors(sizes))
    ignored = [[0.0, 0.0, 64.0, 32.0]]
    labels, counted, _, pos = head.get_targets(anchors, sizes, [sample([], [], ignored=ignored)])
    centre_y = (anchors[:, 1] + anchors[:, 3]) / 2
    inside = (anchors[:, :2] >= 0).all(1) & (anchors[:, 2] <= 64) & (anchors[:, 3] <= 32)
    outside = anchors[:, 1] >= 32
    assert inside.sum() > 5 and not counted[0, inside].any()  # ignored
    assert outside.sum() > 5 and counted[0, outside].all() and not pos.any()  # negatives
    assert (labels == 3).all()  # background = num_classes
    # the bottom half of the map only covers batch padding: never counted
    padded = sample([], [], img_shape=(32, 64))
    _, counted, _, _ = head.get_targets(anchors, sizes, [padded])
    assert not counted[0, centre_y > 40].any() and counted[0, centre_y < 24].any()


def test_classification_loss_contract_for_pluggable_losses():
    LOSSES.register_module(module=RecordingLoss, force=True)
    head = tiny_head(loss_cls=dict(type="RecordingLoss"))
    head.loss(feats(2), [sample([GT_BOX], [GT_LABEL]), sample([], [])])
    ((pred, target, weight, avg_factor),) = head.loss_cls.calls
    assert pred.shape[1] == 3 and target.dtype == torch.long and pred.shape[0] == target.shape[0]
    assert set(target.unique().tolist()) == {GT_LABEL, 3}  # C = background
    assert avg_factor == float((target < 3).sum()) > 0
    assert weight is None


def test_variants_gn_giou_softmax():
    gn = tiny_head(norm_cfg=dict(type="GN", num_groups=8))
    assert isinstance(gn.cls_convs[0].norm, nn.GroupNorm)
    samples = [sample([GT_BOX], [GT_LABEL])]
    giou = tiny_head(loss_bbox=dict(type="GIoULoss", loss_weight=2.0))
    loss = giou.loss(feats(1), samples)["loss_bbox"]
    assert giou.reg_decoded_bbox and torch.isfinite(loss) and 0 < loss < 2 * 2.0
    ce = tiny_head(loss_cls=dict(type="CrossEntropyLoss"))
    assert ce.cls_out_channels == 4
    assert torch.isfinite(ce.loss(feats(1), samples)["loss_cls"])
    assert ce.predict(feats(1), samples)[0].labels.numel() <= 100
    with pytest.raises(ValueError, match="in_channels"):
        tiny_head(in_channels=(16, 32))
    with pytest.raises(ValueError, match="test_cfg"):
        tiny_head(test_cfg=dict(nms_thr=0.5))
    with pytest.raises(ConfigArgumentError, match="pos_iou_thr"):
        tiny_head(assigner=dict(pos_iou=0.5, neg_iou_thr=0.4))


@pytest.fixture(scope="module")
def overfit():
    """Train a tiny backbone + head on one image; return (model parts, losses)."""
    torch.manual_seed(0)
    backbone = TinyStrideBackbone()
    head = tiny_head()
    params = list(backbone.parameters()) + list(head.parameters())
    optim = torch.optim.Adam(params, lr=3e-3)
    img, samples = image(), [sample([GT_BOX], [GT_LABEL])]
    history = []
    for _ in range(150):
        losses = head.loss(backbone(img), samples)
        total = sum(losses.values())
        optim.zero_grad()
        total.backward()
        optim.step()
        history.append(total.item())
    backbone.eval()
    head.eval()
    return backbone, head, history


def top_detection(backbone, head, **meta):
    s = sample([GT_BOX], [GT_LABEL], **meta)
    with torch.no_grad():
        (result,) = head.predict(backbone(image()), [s])  # img_shape coordinates
    assert result.scores.numel() > 0
    result.bboxes = boxes_to_original(result.bboxes, s.metainfo)  # what the detector does
    return result.bboxes[0], result.labels[0].item()


def test_overfit_single_image_and_recover_box(overfit):
    backbone, head, history = overfit
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < first / 10, (first, last)
    box, label = top_detection(backbone, head)
    assert label == GT_LABEL
    assert box_iou(box[None], torch.tensor([GT_BOX])).item() > 0.7


def test_predictions_map_back_to_original_coordinates(overfit):
    backbone, head, _ = overfit
    # the 64 x 64 input was resized from a 100 x 128 (h x w) original
    box, _ = top_detection(backbone, head, ori_shape=(100, 128), scale_factor=(0.5, 0.64))
    expected = torch.tensor([[10 / 0.5, 12 / 0.64, 40 / 0.5, 44 / 0.64]])
    assert box_iou(box[None], expected).item() > 0.7
    assert box[2] <= 128 and box[3] <= 100
    # ... and flipped horizontally after resizing: x -> 64 - x in the input
    box, _ = top_detection(backbone, head, ori_shape=(100, 128), scale_factor=(0.5, 0.64),
                           flip=True, flip_direction="horizontal")
    expected = torch.tensor([[(64 - 40) / 0.5, 12 / 0.64, (64 - 10) / 0.5, 44 / 0.64]])
    assert box_iou(box[None], expected).item() > 0.7


def test_per_image_loss_normalizer_is_the_mean_of_single_image_losses():
    """loss_normalizer='image' (torchvision): each image's sum over its own positives, then
    the mean over images; 'batch' divides the batch's sum by all its positives."""
    head = tiny_head(loss_normalizer="image")
    x = feats()
    samples = [sample([GT_BOX], [GT_LABEL]), sample([[0.0, 0, 30, 20], [30, 30, 60, 62]], [0, 1])]
    both = head.loss(x, samples)
    alone = [head.loss([f[i:i + 1] for f in x], [s]) for i, s in enumerate(samples)]
    for key in ("loss_cls", "loss_bbox"):
        assert both[key].item() == pytest.approx((alone[0][key] + alone[1][key]).item() / 2,
                                                 rel=1e-6)
    batch = tiny_head(loss_normalizer="batch")
    batch.load_state_dict(head.state_dict())
    assert batch.loss(x, samples)["loss_cls"].item() != pytest.approx(both["loss_cls"].item())
    with pytest.raises(ValueError, match="loss_normalizer"):
        tiny_head(loss_normalizer="anchor")


def test_padding_anchors_count_when_not_skipped():
    head = tiny_head(skip_padding_anchors=False)
    sizes = [(8, 8), (4, 4)]
    anchors = torch.cat(head.prior_generator.grid_anchors(sizes))
    _, counted, _, _ = head.get_targets(anchors, sizes, [sample([], [], img_shape=(32, 64))])
    assert counted.all()  # torchvision: anchors over the batch padding are negatives too
