"""RPNHead: Faster R-CNN's anchors, assignment and sampling, losses,
proposal post-processing, the RPN interface, and an RPN-only model that
overfits one image."""
import math

import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn
from torchvision.ops import box_iou

from toolbox.models.backbones.base import Backbone
from toolbox.registry import BACKBONES, HEADS, MODELS
from toolbox.structures import DetDataSample, boxes_to_original

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors, shared CPU


class TinyBackbone(Backbone):
    """Plain convs, no norm layers: maps of ``width`` channels at strides 8, 16."""

    def __init__(self, width=16):
        super().__init__()
        conv = lambda c_in: nn.Sequential(nn.Conv2d(c_in, width, 3, 2, 1), nn.ReLU())  # noqa: E731
        self.c3 = nn.Sequential(conv(3), conv(width), conv(width))
        self.c4 = conv(width)
        self.out_channels, self.out_strides, self.size_divisor = (width, width), (8, 16), 16

    def forward(self, x):
        c3 = self.c3(x)
        return c3, self.c4(c3)


@pytest.fixture(autouse=True)
def tiny_backbone():
    BACKBONES.register_module(module=TinyBackbone, force=True)


def one_image():
    """A bright 32 x 36 rectangle on noise; the sample says the 64 x 64 input
    is the 128 x 128 original resized by 0.5."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 64, 64, generator=generator) * 0.3
    image[:, :, 16:52, 12:44] += 1.5
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(128, 128),
                                         scale_factor=(0.5, 0.5), img_id=0))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[12.0, 16, 44, 52]]),
                                       labels=torch.tensor([2]))
    return image, sample


ORIGINAL_BOX = torch.tensor([[24.0, 32, 88, 104]])


def head(**kwargs):
    cfg = dict(type="RPNHead", in_channels=8, strides=(8, 16), feat_channels=8)
    return HEADS.build({**cfg, **kwargs})


def feats(batch=1, size=8):
    return [torch.randn(batch, 8, size, size), torch.randn(batch, 8, size // 2, size // 2)]


def test_three_anchors_per_location_of_scale_8():
    rpn = head()
    assert rpn.num_base_priors == 3
    cls, reg = rpn(feats(2))
    assert [tuple(c.shape) for c in cls] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(r.shape) for r in reg] == [(2, 12, 8, 8), (2, 12, 4, 4)]
    base = rpn.prior_generator.base_anchors[0]  # stride 8: size 8 * 8 = 64, ratios h/w
    widths, heights = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    assert torch.allclose(widths, torch.tensor([64 * math.sqrt(2), 64, 64 / math.sqrt(2)]))
    assert torch.allclose(heights, torch.tensor([64 / math.sqrt(2), 64, 64 * math.sqrt(2)]))


def test_assignment_and_sampling_follow_faster_rcnn():
    rpn = head(anchor_generator=dict(scales=(4.0,)))
    _, sample = one_image()
    sizes = [(8, 8), (4, 4)]
    anchors = torch.cat(rpn.prior_generator.grid_anchors(sizes))
    torch.manual_seed(0)
    pos, neg, matched = rpn._sample_anchors(anchors, sizes, sample)
    iou = box_iou(anchors, sample.gt_instances.bboxes)[:, 0]
    # 240 anchors on the 64 x 64 image: every negative fits beside the positives
    assert 0 < pos.numel() <= 128 and neg.numel() == min(256 - pos.numel(), int((iou < 0.3).sum()))
    # positives: IoU >= 0.7, or the gt's best anchor (low-quality match, IoU >= 0.3)
    assert ((iou[pos] >= 0.7) | (iou[pos] == iou.max())).all() and iou.max() >= 0.3
    assert (iou[neg] < 0.3).all()
    assert torch.equal(matched, sample.gt_instances.bboxes.expand(pos.numel(), 4))


def test_objectness_loss_of_an_untrained_head_is_log_2():
    rpn = head(anchor_generator=dict(scales=(4.0,)))
    for conv in (rpn.rpn_cls, rpn.rpn_reg):
        nn.init.zeros_(conv.weight)  # logits 0 -> BCE ln 2 for every sampled anchor
    _, sample = one_image()
    losses = rpn.loss(feats(), [sample])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    assert losses["loss_rpn_cls"].item() == pytest.approx(math.log(2), rel=1e-5)
    assert losses["loss_rpn_bbox"].item() > 0  # zero deltas, non-zero targets


def test_proposals_nms_size_filter_and_coordinates():
    torch.manual_seed(0)
    rpn = head(strides=(8,), test_cfg=dict(max_per_img=20, min_bbox_size=4))
    nn.init.normal_(rpn.rpn_reg.weight, std=0.5)  # spread the boxes
    _, sample = one_image()
    level = [torch.randn(1, 8, 8, 8)]
    raw = rpn.predict(level, [sample])[0]  # img_shape coordinates
    assert 0 < len(raw) <= 20 and torch.equal(raw.labels, torch.zeros(len(raw), dtype=torch.long))
    assert (raw.scores[:-1] >= raw.scores[1:]).all()
    iou = box_iou(raw.bboxes, raw.bboxes).fill_diagonal_(0)
    assert iou.max() <= 0.7  # one level: NMS at 0.7
    sizes = raw.bboxes[:, 2:] - raw.bboxes[:, :2]
    assert (sizes > 4).all() and raw.bboxes.min() >= 0 and raw.bboxes.max() <= 64
    original = boxes_to_original(raw.bboxes, sample.metainfo)  # what the detector does
    assert torch.allclose(original, raw.bboxes * 2)  # scale factor 0.5, ori 128


def test_loss_and_predict_gives_detached_proposals_with_overrides():
    rpn = head()
    _, sample = one_image()
    losses, proposals = rpn.loss_and_predict(feats(), [sample],
                                             proposal_cfg=dict(nms_pre=50, max_per_img=5))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"} and losses["loss_rpn_cls"].requires_grad
    assert len(proposals) == 1 and len(proposals[0]) == 5
    assert not proposals[0].bboxes.requires_grad and proposals[0].bboxes.max() <= 64
    with pytest.raises(ValueError, match="max_per_image"):
        rpn.loss_and_predict(feats(), [sample], proposal_cfg=dict(max_per_image=5))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="in_channels"):
        HEADS.build(dict(type="RPNHead", in_channels=(8, 16), strides=(8, 16)))
    with pytest.raises(ValueError, match="loss_cls"):
        head(loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False))
    with pytest.raises(ValueError, match="test_cfg"):
        head(test_cfg=dict(score_thr=0.1))
    with pytest.raises(ValueError, match="3 feature maps"):
        head()(feats() + [torch.randn(1, 8, 2, 2)])


def test_rpn_only_model_overfits_one_image_and_finds_the_box_in_original_coordinates():
    torch.manual_seed(0)
    model = MODELS.build(dict(type="SingleStageDetector", backbone=dict(type="TinyBackbone"),
                              bbox_head=dict(type="RPNHead", feat_channels=16,
                                             anchor_generator=dict(scales=(4.0,)))))
    assert model.bbox_head.in_channels == 16 and model.bbox_head.strides == (8, 16)
    image, sample = one_image()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        losses = model(image, [sample], mode="loss")
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert losses["loss_rpn_cls"].item() < 0.05
    model.eval()
    with torch.no_grad():
        result = model(image, [one_image()[1]], mode="predict")[0].pred_instances
    # the best-scored proposal would be a positive by the RPN's own 0.7 criterion
    assert box_iou(result.bboxes[:1], ORIGINAL_BOX).item() > 0.7
    assert (result.labels == 0).all()
