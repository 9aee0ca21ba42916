"""GA-RetinaNet head: guided anchors, their decoding and sparsity, losses,
configuration errors, and a one-image overfit recovering the box."""
import math

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from toolbox.models.backbones.base import Backbone
from toolbox.registry import HEADS
from toolbox.structures import boxes_to_original

from one_image import GT_BOX, GT_LABEL, feats, image, sample

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_ANCHORS = dict(sigma=4.0, approx_anchor_generator=dict(
    octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0)))


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


def tiny_head(**kw):
    cfg = dict(type="GARetinaHead", num_classes=3, in_channels=16, feat_channels=32,
               stacked_convs=2, strides=(8, 16), norm_cfg=dict(type="GN", num_groups=8))
    cfg.update(kw)
    return HEADS.build(cfg)


def test_forward_shapes_and_anchor_decoding():
    head = tiny_head()
    cls, reg, shape, loc = head(feats())
    assert [c.shape for c in cls] == [(2, 3, 8, 8), (2, 3, 4, 4)]  # one anchor per cell
    assert [r.shape for r in reg] == [(2, 4, 8, 8), (2, 4, 4, 4)]
    assert [s.shape for s in shape] == [(2, 2, 8, 8), (2, 2, 4, 4)]
    assert [p.shape for p in loc] == [(2, 1, 8, 8), (2, 1, 4, 4)]
    # constant (dw, dh) = (log 0.5, 0.3): w = 8 * stride * 0.5, h = 8 * stride * e^0.3
    head = tiny_head(sigma=8.0)
    conv = head.guidance.conv_shape
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([math.log(0.5), 0.3]))
    _, _, shape, _ = head(feats(1))
    anchors = head.guidance.guided_anchors(shape)
    cell = 1 * 4 + 2  # level 1 (stride 16), row 1, column 2: point (32, 16)
    w, h = 8 * 16 * 0.5, 8 * 16 * math.exp(0.3)
    want = torch.tensor([32 - w / 2, 16 - h / 2, 32 + w / 2, 16 + h / 2])
    torch.testing.assert_close(anchors[1][0, cell], want)
    assert anchors[0].shape == (1, 64, 4)


def test_level_and_stride_mismatch_errors():
    head = tiny_head()
    with pytest.raises(ValueError, match="3 feature maps.*2 levels"):
        head(feats() + [torch.zeros(2, 16, 2, 2)])
    with pytest.raises(ValueError, match=r"strides \(8, 16, 32\).*strides \(8, 16\)"):
        tiny_head(approx_anchor_generator=dict(strides=(8, 16, 32), octave_base_scale=4,
                                               scales_per_octave=3))
    with pytest.raises(ValueError, match="shape_assigner"):
        tiny_head(shape_assigner=dict(pos_iou=0.5))


def test_losses_and_anchor_sparsity_count():
    head = tiny_head()
    x = feats()
    losses = head.loss(x, [sample([GT_BOX], [GT_LABEL]), sample([], [])])
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_anchor_loc", "loss_anchor_shape",
                           "num_anchors_kept"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert not losses["num_anchors_kept"].requires_grad
    # the count is the cells whose location probability exceeds loc_filter_thr
    _, _, _, loc = head(x)
    kept = [sum(int((p[i].sigmoid() > 0.01).sum()) for p in loc) for i in range(2)]
    assert head.last_num_anchors == kept and head.last_num_locations == 64 + 16
    assert losses["num_anchors_kept"].item() == pytest.approx(sum(kept) / 2)
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    for part in (head.guidance.conv_loc, head.guidance.conv_shape, head.retina_cls,
                 head.retina_reg, head.adapt_reg.conv_offset):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0


def test_location_filter_controls_the_anchors_kept_at_inference():
    head = tiny_head().eval()
    samples = [sample([GT_BOX], [GT_LABEL])]
    with torch.no_grad():
        head.guidance.conv_loc.weight.zero_()
        head.guidance.conv_loc.bias.fill_(-10.0)  # p = 4.5e-5 < 0.01 everywhere
        (none,) = head.predict(feats(1), samples)
        assert head.last_num_anchors == [0] and len(none) == 0
        head.guidance.conv_loc.bias.fill_(10.0)
        head.retina_cls.bias.fill_(5.0)
        (every,) = head.predict(feats(1), samples)
        assert head.last_num_anchors == [80] and len(every) > 0


@pytest.fixture(scope="module")
def overfit(one_thread):
    torch.manual_seed(0)
    backbone = TinyStrideBackbone()
    head = tiny_head(loss_bbox=dict(type="L1Loss"), **SMALL_ANCHORS)
    optim = torch.optim.Adam(list(backbone.parameters()) + list(head.parameters()), lr=1e-3)
    img, samples = image(), [sample([GT_BOX], [GT_LABEL])]
    history = []
    for _ in range(120):
        losses = head.loss(backbone(img), samples)
        total = sum(v for k, v in losses.items() if "loss" in k)
        optim.zero_grad()
        total.backward()
        optim.step()
        history.append({k: v.item() for k, v in losses.items()})
    return backbone.eval(), head.eval(), history


def top_detection(backbone, head, **meta):
    s = sample([GT_BOX], [GT_LABEL], **meta)
    with torch.no_grad():
        (result,) = head.predict(backbone(image()), [s])  # img_shape coordinates
    assert result.scores.numel() > 0
    result.bboxes = boxes_to_original(result.bboxes, s.metainfo)  # what the detector does
    return result.bboxes[0], result.labels[0].item()


def test_overfit_single_image_recovers_box_in_original_coordinates(overfit):
    backbone, head, history = overfit
    for key in ("loss_cls", "loss_bbox", "loss_anchor_loc"):
        assert history[-1][key] < history[0][key] / 4, key
    # the anchor shapes learn: the cell at the box centre (25, 28) -> (3, 3) on
    # stride 8 gets a 30 x 32 anchor (it started as a 4 * 8 = 32 px square)
    with torch.no_grad():
        _, _, shape, _ = head(backbone(image()))
    anchor = head.guidance.guided_anchors(shape)[0][0, 3 * 8 + 3]
    torch.testing.assert_close(anchor[2:] - anchor[:2], torch.tensor([30.0, 32.0]), rtol=0.1,
                               atol=0.0)
    box, label = top_detection(backbone, head)
    assert label == GT_LABEL
    assert box_iou(box[None], torch.tensor([GT_BOX])).item() > 0.7
    assert 0 < head.last_num_anchors[0] <= 80
    # the 64 x 64 input was resized from a 100 x 128 (h x w) original
    box, _ = top_detection(backbone, head, ori_shape=(100, 128), scale_factor=(0.5, 0.64))
    expected = torch.tensor([[10 / 0.5, 12 / 0.64, 40 / 0.5, 44 / 0.64]])
    assert box_iou(box[None], expected).item() > 0.7
    # ... and flipped horizontally after resizing: x -> 64 - x in the input
    box, _ = top_detection(backbone, head, ori_shape=(100, 128), scale_factor=(0.5, 0.64),
                           flip=True, flip_direction="horizontal")
    expected = torch.tensor([[(64 - 40) / 0.5, 12 / 0.64, (64 - 10) / 0.5, 44 / 0.64]])
    assert box_iou(box[None], expected).item() > 0.7


def test_without_feature_adaption_the_predictors_read_the_tower_features():
    """The paper's ablation: no deformable adaption, same guided anchors."""
    head = tiny_head(feature_adaption=False)
    assert head.adapt_cls is None and head.adapt_reg is None
    adapted = tiny_head()
    assert (sum(p.numel() for p in adapted.parameters()) - sum(p.numel() for p in head.parameters())
            == sum(p.numel() for m in (adapted.adapt_cls, adapted.adapt_reg)
                   for p in m.parameters()))
    x = feats(1)
    cls, reg, shape, _ = head(x)
    for level, feat in enumerate(x):
        assert torch.allclose(cls[level], head.retina_cls(head.cls_convs(feat)))
        assert torch.allclose(reg[level], head.retina_reg(head.reg_convs(feat)))
    losses = head.loss_by_feat(*head(feats(1)), [sample([[8.0, 8.0, 40.0, 36.0]])])
    assert all(torch.isfinite(v) for v in losses.values())
