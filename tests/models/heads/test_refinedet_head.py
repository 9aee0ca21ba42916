import math

import pytest
import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou

from toolbox.models.backbones.base import Backbone
from toolbox.models.heads.parts import flatten_levels
from toolbox.models.layers.transfer_connection import TransferConnectionBlock
from toolbox.registry import HEADS, MODELS
from toolbox.structures import boxes_to_original

from one_image import GT_BOX, GT_LABEL, feats, image, sample


def feats_rd(batch=2):
    """The shared two-level features with a 24-wide second level."""
    return feats(batch, channels=(16, 24))


pytestmark = pytest.mark.usefixtures("one_thread")

LN2 = math.log(2.0)


def tiny_head(**kw):
    cfg = dict(type="RefineDetHead", num_classes=3, in_channels=(16, 24), strides=(8, 16),
               feat_channels=32)
    cfg.update(kw)
    return HEADS.build(cfg)


def one_level_head(**kw):
    return tiny_head(in_channels=16, strides=(8,), **kw)


def anchor_index(y, x, a, width=8, anchors=3):
    """Flat index of anchor ``a`` of cell (y, x) on the first level."""
    return (y * width + x) * anchors + a


def put(maps, index, values, channels, width=8):
    """Write ``values`` (K) into anchor ``index``'s channels of a [1, A * K, H, W] map."""
    cell, a = divmod(index, 3)
    y, x = divmod(cell, width)
    maps[0, a * channels:(a + 1) * channels, y, x] = torch.as_tensor(values, dtype=maps.dtype)


# ------------------------------------------------------------------ structure
def test_registry_build_forward_shapes_and_level_checks():
    head = tiny_head()
    arm_cls, arm_reg, odm_cls, odm_reg = head(feats_rd())
    assert [m.shape for m in arm_cls] == [(2, 6, 8, 8), (2, 6, 4, 4)]  # 3 anchors x 2
    assert [m.shape for m in arm_reg] == [(2, 12, 8, 8), (2, 12, 4, 4)]
    assert [m.shape for m in odm_cls] == [(2, 12, 8, 8), (2, 12, 4, 4)]  # 3 x (3 + 1)
    assert [m.shape for m in odm_reg] == [(2, 12, 8, 8), (2, 12, 4, 4)]
    # paper anchors: 4x the stride, ratios 0.5/1/2, centred in the cell
    ratio_one = head.prior_generator.grid_anchors([(8, 8), (4, 4)])[0][1]
    assert ratio_one.tolist() == [-12.0, -12.0, 20.0, 20.0]
    with pytest.raises(ValueError, match=r"3 feature maps.*2 levels"):
        head(feats_rd() + [torch.zeros(2, 24, 2, 2)])
    with pytest.raises(ValueError, match=r"in_channels.*3 levels.*strides.*2"):
        tiny_head(in_channels=(16, 24, 32))
    with pytest.raises(ValueError, match="level 1 should be"):
        head([torch.zeros(1, 16, 8, 8), torch.zeros(1, 16, 4, 4)])
    with pytest.raises(ValueError, match="test_cfg"):
        tiny_head(test_cfg=dict(nms_thr=0.5))
    with pytest.raises(ValueError, match="neg_anchor_thr"):
        tiny_head(neg_anchor_thr=1.5)


def test_transfer_connection_block_shapes_and_size():
    top = TransferConnectionBlock(24, 32, has_upper=False)
    mid = TransferConnectionBlock(16, 32)
    coarse = top(torch.randn(2, 24, 3, 3))
    assert coarse.shape == (2, 32, 3, 3) and (coarse >= 0).all()  # ends in a ReLU
    assert mid(torch.randn(2, 16, 6, 6), coarse).shape == (2, 32, 6, 6)
    assert mid(torch.randn(2, 16, 5, 5), coarse).shape == (2, 32, 5, 5)  # 6 -> 5: cropped
    with pytest.raises(ValueError, match="upper"):
        mid(torch.randn(2, 16, 6, 6))
    with pytest.raises(ValueError, match=r"\[B, 16, H, W\]"):
        mid(torch.randn(2, 8, 6, 6), coarse)
    # Fig. 2: conv3x3(in->256), conv3x3, deconv 2x2, conv3x3, all with biases
    c_in, c = 512, 256
    by_hand = (9 * c_in * c + c) + (9 * c * c + c) + (4 * c * c + c) + (9 * c * c + c)
    assert sum(p.numel() for p in TransferConnectionBlock(c_in, c).parameters()) == by_hand


def test_full_size_refinedet320_vgg16_parameter_count():
    """RefineDet320-VGG16 counted layer by layer from the paper (VOC: 20
    classes + background) equals the built detector."""
    model = MODELS.build(dict(type="SingleStageDetector", backbone=dict(type="VGG"),
                              bbox_head=dict(type="RefineDetHead", num_classes=20)))

    def conv(k, i, o):
        return k * k * i * o + o

    vgg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    backbone = sum(conv(3, i, o) for i, o in vgg) + 512 + 512  # + L2Norm scales
    backbone += conv(3, 512, 1024) + conv(1, 1024, 1024) + conv(1, 1024, 256) + conv(3, 256, 512)
    sources, anchors, classes = (512, 512, 1024, 512), 3, 21
    arm = sum(conv(3, c, anchors * 2) + conv(3, c, anchors * 4) for c in sources)
    tcb = sum(conv(3, c, 256) + 2 * conv(3, 256, 256) for c in sources) + 3 * conv(2, 256, 256)
    odm = 4 * (conv(3, 256, anchors * classes) + conv(3, 256, anchors * 4))
    assert sum(p.numel() for p in model.backbone.parameters()) == backbone
    assert sum(p.numel() for p in model.bbox_head.parameters()) == arm + tcb + odm
    assert backbone + arm + tcb + odm == 34_440_884


# ------------------------------------------------------------------ decoding
def test_two_step_decoding_of_a_hand_box():
    """Cell (3, 3), ratio-1 anchor (12, 12, 44, 44). The ARM moves its centre
    right by 0.1 * 2.5 * 32 = 8 px and doubles its width (0.2 * 5 ln 2 = ln 2):
    refined anchor centre (36, 28), 64 x 32. The ODM then moves the centre
    down by 0.1 * 2.5 * 32 = 8 px and halves the width: centre (36, 36),
    32 x 32, i.e. (20, 20, 52, 52)."""
    head = one_level_head().eval()
    index = anchor_index(3, 3, 1)
    arm_deltas, odm_deltas = [2.5, 0.0, 5 * LN2, 0.0], [0.0, 2.5, -5 * LN2, 0.0]
    arm_cls, arm_reg = torch.zeros(1, 6, 8, 8), torch.zeros(1, 12, 8, 8)
    odm_cls, odm_reg = torch.zeros(1, 12, 8, 8), torch.zeros(1, 12, 8, 8)
    odm_cls[0, 3::4] = 10.0  # background everywhere ...
    put(arm_reg, index, arm_deltas, 4)
    put(odm_reg, index, odm_deltas, 4)
    put(odm_cls, index, [0.0, 0.0, 10.0, 0.0], 4)  # ... except class 2 at this anchor
    meta = dict(img_shape=(64, 64), ori_shape=(64, 64))
    (result,) = head.predict_by_feat([arm_cls], [arm_reg], [odm_cls], [odm_reg], [meta])
    assert result.labels.tolist() == [GT_LABEL]
    expected = torch.tensor([[20.0, 20.0, 52.0, 52.0]])
    torch.testing.assert_close(result.bboxes, expected)
    # torchvision's coder with SSD's variances (weights 10, 10, 5, 5), twice
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    anchor = torch.tensor([[12.0, 12.0, 44.0, 44.0]])
    refined = coder.decode_single(torch.tensor([arm_deltas]), anchor)
    torch.testing.assert_close(coder.decode_single(torch.tensor([odm_deltas]), refined), expected)
    # training: the ODM target of this box is the same offset, from the refined anchor
    # (IoU 768 / 2304 = 1/3 with it, so positives start at 0.3 here)
    head = one_level_head(odm_assigner=dict(pos_iou_thr=0.3, neg_iou_thr=0.3))
    targets = head.get_targets(head.prior_generator.grid_anchors([(8, 8)])[0], [(8, 8)],
                               [sample(expected.tolist(), [GT_LABEL])],
                               flatten_levels([arm_cls], 2), flatten_levels([arm_reg], 4))
    labels, _, bbox_targets, pos = targets["odm"]
    assert pos[0, index] and labels[0, index] == GT_LABEL
    torch.testing.assert_close(bbox_targets[0, index], torch.tensor(odm_deltas))
    torch.testing.assert_close(targets["odm_priors"][0, index], refined[0])


# ------------------------------------------------------- negative anchor filtering
def filtering_case():
    """ARM background logit 5 (p = 1 / (1 + e^-5) = 0.99331 > 0.99) at the three
    anchors of cell (3, 3), 4 (p = 0.98201 <= 0.99) everywhere else."""
    arm_cls = torch.zeros(1, 6, 8, 8)
    arm_cls[0, 1::2] = 4.0
    arm_cls[0, 1::2, 3, 3] = 5.0
    filtered = [anchor_index(3, 3, a) for a in range(3)]
    return arm_cls, torch.zeros(1, 12, 8, 8), filtered


def test_negative_anchor_filtering_in_training():
    head = one_level_head()
    arm_cls, arm_reg, filtered = filtering_case()
    anchors = head.prior_generator.grid_anchors([(8, 8)])[0]
    mask = head.filtered_anchors(flatten_levels([arm_cls], 2))
    assert mask[0].nonzero().flatten().tolist() == filtered
    # the ground truth is exactly the ratio-1 anchor of the filtered cell
    samples = [sample([[12.0, 12.0, 44.0, 44.0]], [GT_LABEL])]
    targets = head.get_targets(anchors, [(8, 8)], samples, flatten_levels([arm_cls], 2),
                               flatten_levels([arm_reg], 4))
    _, arm_counted, _, arm_pos = targets["arm"]
    assert arm_pos[0, filtered[1]]  # the ARM still learns it ...
    _, odm_counted, _, odm_pos = targets["odm"]
    assert not odm_counted[0, filtered].any()  # ... the ODM neither as positive nor negative
    assert odm_pos.any() and odm_counted[0].sum() == 64 * 3 - 3
    # ODM logits at filtered anchors get no gradient, though one would be positive
    odm_cls = torch.zeros(1, 12, 8, 8, requires_grad=True)
    losses = head.loss_by_feat([arm_cls], [arm_reg], [odm_cls], [torch.zeros(1, 12, 8, 8)],
                               samples)
    losses["odm_loss_cls"].backward()
    assert odm_cls.grad[0, :, 3, 3].abs().sum() == 0 and odm_cls.grad.abs().sum() > 0
    plain = one_level_head(use_arm=False)  # the one-step ablation filters nothing
    targets = plain.get_targets(anchors, [(8, 8)], samples)
    assert targets["arm"] is None and targets["odm"][3][0, filtered[1]]


def test_negative_anchor_filtering_at_inference():
    head = one_level_head().eval()
    arm_cls, arm_reg, filtered = filtering_case()
    kept = anchor_index(0, 5, 1)
    odm_cls, odm_reg = torch.zeros(1, 12, 8, 8), torch.zeros(1, 12, 8, 8)
    odm_cls[0, 3::4] = 10.0
    for index in (filtered[1], kept):  # two confident class-0 anchors
        put(odm_cls, index, [10.0, 0.0, 0.0, 0.0], 4)
    meta = dict(img_shape=(64, 64))
    (result,) = head.predict_by_feat([arm_cls], [arm_reg], [odm_cls], [odm_reg], [meta])
    anchors = head.prior_generator.grid_anchors([(8, 8)])[0]
    assert result.bboxes.shape == (1, 4)
    torch.testing.assert_close(result.bboxes[0], anchors[kept].clamp(0, 64))
    # without the ARM both survive
    plain = one_level_head(use_arm=False).eval()
    (result,) = plain.predict_by_feat(None, None, [odm_cls], [odm_reg], [meta])
    assert result.bboxes.shape == (2, 4)


# ------------------------------------------------------------------- losses
def test_hard_negative_mining_three_to_one_in_both_modules():
    """With all-zero outputs every anchor's CE is ln 2 (ARM) or ln 4 (ODM, 3
    classes + background): P positives and 3P mined negatives divided by P
    give exactly 4 ln 2 and 4 ln 4."""
    head = one_level_head()
    zeros = [torch.zeros(2, 6, 8, 8)], [torch.zeros(2, 12, 8, 8)]
    odm = [torch.zeros(2, 12, 8, 8)], [torch.zeros(2, 12, 8, 8)]
    samples = [sample([GT_BOX], [GT_LABEL]), sample([[40.0, 8.0, 60.0, 60.0]], [0])]
    losses = head.loss_by_feat(*zeros, *odm, samples)
    torch.testing.assert_close(losses["arm_loss_cls"], torch.tensor(4 * LN2))
    torch.testing.assert_close(losses["odm_loss_cls"], torch.tensor(4 * math.log(4)))
    assert losses["arm_loss_bbox"] > 0 and losses["odm_loss_bbox"] > 0
    # an image without objects contributes nothing, but keeps the graph
    empty = head.loss(feats_rd(1)[:1], [sample([], [])])
    assert all(v == 0 for v in empty.values())
    sum(empty.values()).backward()
    assert head.odm_reg[0].weight.grad is not None


def test_one_step_ablation_has_no_arm():
    full, plain = tiny_head(), tiny_head(use_arm=False)
    assert not hasattr(plain, "arm_cls")
    arm_params = sum(p.numel() for m in (full.arm_cls, full.arm_reg) for p in m.parameters())
    count = sum(p.numel() for p in full.parameters())
    assert sum(p.numel() for p in plain.parameters()) == count - arm_params
    arm_cls, arm_reg, odm_cls, _ = plain(feats_rd())
    assert arm_cls is None and arm_reg is None and odm_cls[0].shape == (2, 12, 8, 8)
    losses = plain.loss(feats_rd(), [sample([GT_BOX], [GT_LABEL]), sample([], [])])
    assert set(losses) == {"odm_loss_cls", "odm_loss_bbox"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_arm_stacked_convs_put_a_tower_under_the_arm_only():
    gn = dict(type="GN", num_groups=8)
    plain, towered = tiny_head(norm_cfg=gn), tiny_head(arm_stacked_convs=2, norm_cfg=gn)
    assert not any(k.startswith("arm_convs") for k in plain.state_dict())  # the paper's layout
    first = towered.arm_convs[1][0]
    assert first.conv.in_channels == 24 and first.conv.out_channels == 32
    assert isinstance(first.norm, nn.GroupNorm) and first.conv.bias is None
    assert towered.arm_cls[0].in_channels == 32 and towered.arm_reg[1].in_channels == 32
    # per level: 3x3 convs c -> 32 and 32 -> 32 (no bias) + two GroupNorms
    tower = sum(9 * c * 32 + 9 * 32 * 32 + 4 * 32 for c in (16, 24))
    arm_now = sum(9 * 32 * k + k for k in (6, 12)) * 2
    arm_was = sum(9 * c * k + k for c in (16, 24) for k in (6, 12))
    count = sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in towered.parameters()) == count - arm_was + arm_now + tower
    # the ARM predictors see the tower's output; the ODM's path is untouched
    fs = feats_rd()
    arm_cls, _, odm_cls, _ = towered(fs)
    assert arm_cls[0].shape == (2, 6, 8, 8)
    expect = towered.arm_cls[0](towered.arm_convs[0](fs[0]))
    assert torch.equal(arm_cls[0], expect)
    towered.arm_convs[0][0].conv.weight.data.zero_()
    assert torch.equal(towered(fs)[2][0], odm_cls[0])
    with pytest.raises(ValueError, match="arm_stacked_convs"):
        tiny_head(arm_stacked_convs=-1)


# ------------------------------------------------------------------ overfit
class TinyStrideBackbone(Backbone):
    """Stand-in backbone: maps of 16 and 24 channels at strides 8 and 16."""

    def __init__(self):
        super().__init__()

        def conv(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.ReLU())

        self.stem = nn.Sequential(conv(3, 16), conv(16, 16), conv(16, 16))
        self.down = conv(16, 24)
        self.out_channels, self.out_strides, self.size_divisor = (16, 24), (8, 16), 16

    def forward(self, x):
        c3 = self.stem(x)
        return c3, self.down(c3)


@pytest.fixture(scope="module")
def overfit(one_thread):
    torch.manual_seed(0)
    backbone, head = TinyStrideBackbone(), tiny_head()
    optim = torch.optim.Adam(list(backbone.parameters()) + list(head.parameters()), lr=3e-3)
    img, samples = image(), [sample([GT_BOX], [GT_LABEL])]
    history = []
    for _ in range(120):
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
    # the 64 x 64 input was resized from a 100 x 128 (h x w) original, then flipped
    box, _ = top_detection(backbone, head, ori_shape=(100, 128), scale_factor=(0.5, 0.64))
    expected = torch.tensor([[10 / 0.5, 12 / 0.64, 40 / 0.5, 44 / 0.64]])
    assert box_iou(box[None], expected).item() > 0.7
    box, _ = top_detection(backbone, head, ori_shape=(100, 128), scale_factor=(0.5, 0.64),
                           flip=True, flip_direction="horizontal")
    expected = torch.tensor([[(64 - 40) / 0.5, 12 / 0.64, (64 - 10) / 0.5, 44 / 0.64]])
    assert box_iou(box[None], expected).item() > 0.7
