"""GA-RPN head: the RPN head interface (loss / predict / loss_and_predict),
configuration errors and a one-image overfit recovering the box."""
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from toolbox.registry import HEADS
from toolbox.structures import boxes_to_original

from one_image import GT_BOX, feats, image, sample

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_ANCHORS = dict(sigma=4.0, approx_anchor_generator=dict(
    octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0)))
LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_bbox", "loss_anchor_loc", "loss_anchor_shape"}


def tiny_head(**kw):
    cfg = dict(type="GARPNHead", in_channels=16, feat_channels=32, strides=(8, 16),
               **SMALL_ANCHORS)
    cfg.update(kw)
    return HEADS.build(cfg)


def tiny_backbone():
    def conv(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, stride=2, padding=1), nn.ReLU())

    stem = nn.Sequential(conv(3, 16), conv(16, 16), conv(16, 16))
    down = conv(16, 16)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.down = stem, down

        def forward(self, x):
            c3 = self.stem(x)
            return c3, self.down(c3)

    return Tiny()


def test_rpn_interface():
    head = tiny_head()
    samples = [sample([GT_BOX]), sample([])]
    losses = head.loss(feats(), samples)
    assert set(losses) == LOSS_KEYS | {"num_anchors_kept"}
    assert all(torch.isfinite(v) for v in losses.values())
    # at most 256 sampled anchors per image, half positive: the cls loss is their mean BCE
    assert 0 < losses["loss_rpn_cls"] < 1.0
    proposals = head.predict(feats(), samples)
    assert len(proposals) == 2
    for p in proposals:
        assert set(p.keys()) >= {"bboxes", "scores", "labels"}
        assert (p.labels == 0).all() and len(p) <= 80  # one anchor per kept cell at most
    losses, proposals = head.loss_and_predict(feats(), samples,
                                              proposal_cfg=dict(nms_pre=20, max_per_img=5))
    assert set(losses) >= LOSS_KEYS and losses["loss_rpn_cls"].requires_grad
    assert all(len(p) <= 5 and not p.bboxes.requires_grad for p in proposals)
    assert all((p.bboxes >= 0).all() and (p.bboxes <= 64).all() for p in proposals)
    with pytest.raises(ValueError, match="nms_thr"):
        head.loss_and_predict(feats(), samples, proposal_cfg=dict(nms_thr=0.5))


def test_level_mismatch_and_bad_arguments():
    head = tiny_head()
    with pytest.raises(ValueError, match="1 feature maps.*2 levels"):
        head(feats()[:1])
    with pytest.raises(ValueError, match=r"strides \(4, 8\).*strides \(8, 16\)"):
        tiny_head(approx_anchor_generator=dict(strides=(4, 8), octave_base_scale=8,
                                               scales_per_octave=3))
    with pytest.raises(ValueError, match="sigmoid"):
        tiny_head(loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False))
    with pytest.raises(ValueError, match="test_cfg"):
        tiny_head(test_cfg=dict(score_thr=0.1))


def test_overfit_single_image_recovers_box_in_original_coordinates():
    torch.manual_seed(0)
    backbone, head = tiny_backbone(), tiny_head()
    optim = torch.optim.Adam(list(backbone.parameters()) + list(head.parameters()), lr=1e-3)
    img, samples = image(), [sample([GT_BOX])]
    first = None
    for _ in range(120):
        losses = head.loss(backbone(img), samples)
        total = sum(v for k, v in losses.items() if "loss" in k)
        first = total.item() if first is None else first
        optim.zero_grad()
        total.backward()
        optim.step()
    assert total.item() < first / 3
    backbone.eval(), head.eval()
    # the 64 x 64 input was resized from a 100 x 128 (h x w) original
    meta = dict(ori_shape=(100, 128), scale_factor=(0.5, 0.64))
    s = sample([GT_BOX], **meta)
    with torch.no_grad():
        (result,) = head.predict(backbone(img), [s])  # img_shape coordinates
    result.bboxes = boxes_to_original(result.bboxes, s.metainfo)  # what the detector does
    expected = torch.tensor([[10 / 0.5, 12 / 0.64, 40 / 0.5, 44 / 0.64]])
    assert box_iou(result.bboxes[:1], expected).item() > 0.7
    # background learned (every score started at 0.5): far proposals score low
    far = box_iou(result.bboxes, expected)[:, 0] < 0.3
    assert far.any() and result.scores[far].max() < result.scores[0] / 2
