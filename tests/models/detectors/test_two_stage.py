"""TwoStageDetector: wiring (channels and strides from the neck, mismatch
errors), the three modes, and Faster R-CNN overfitting one image."""
import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn
from torchvision.ops import box_iou

from toolbox.models.backbones.base import Backbone
from toolbox.registry import BACKBONES, MODELS
from toolbox.structures import DetDataSample

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors, shared CPU


class TinyBackbone(Backbone):
    """Plain convs, no norm layers: maps of ``width`` channels at strides 8, 16."""

    def __init__(self, width=16):
        super().__init__()
        conv = lambda c_in: nn.Sequential(nn.Conv2d(c_in, width, 3, 2, 1), nn.ReLU())  # noqa: E731
        self.c3 = nn.Sequential(conv(3), conv(width), conv(width))
        self.c4 = conv(width)
        self.declare_outputs((width, width), (8, 16), size_divisor=16)

    def forward(self, x):
        c3 = self.c3(x)
        return c3, self.c4(c3)


@pytest.fixture(autouse=True)
def tiny_backbone():
    BACKBONES.register_module(module=TinyBackbone, force=True)


RPN = dict(type="RPNHead", feat_channels=16, anchor_generator=dict(scales=(4.0,)))
ROI = dict(type="RoIBoxHead", num_classes=3, fc_channels=64, sampler=dict(num=64))


def detector(rpn_head=RPN, roi_head=ROI, **kwargs):
    cfg = dict(type="TwoStageDetector", backbone=dict(type="TinyBackbone"),
               rpn_head=rpn_head, roi_head=roi_head)
    return MODELS.build({**cfg, **kwargs})


def one_image():
    """A bright 32 x 36 rectangle on noise; the 64 x 64 input is the 128 x 128
    original resized by 0.5."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 64, 64, generator=generator) * 0.3
    image[:, :, 16:52, 12:44] += 1.5
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(128, 128),
                                         scale_factor=(0.5, 0.5), img_id=0))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[12.0, 16, 44, 52]]),
                                       labels=torch.tensor([2]))
    return image, sample


def test_heads_get_channels_and_strides_from_the_neck():
    model = detector(neck=dict(type="FPN", out_channels=8, num_outs=3, add_extra_convs="on_input"))
    assert model.neck.in_channels == (16, 16)
    for head in (model.rpn_head, model.roi_head):
        assert head.in_channels == 8 and head.strides == (8, 16, 32)
    assert model.rpn_head.prior_generator.strides == (8, 16, 32)
    without_neck = detector()
    assert without_neck.roi_head.strides == (8, 16) and without_neck.rpn_head.in_channels == 16


def test_heads_whose_strides_disagree_with_the_neck_are_refused():
    neck = dict(type="FPN", out_channels=8, num_outs=3, add_extra_convs="on_input")
    with pytest.raises(ValueError, match=r"roi_head strides \(4, 8, 16, 32\).*neck's "
                                         r"out_strides \(8, 16, 32\)"):
        detector(neck=neck, roi_head={**ROI, "strides": (4, 8, 16, 32)})
    with pytest.raises(ValueError, match=r"rpn_head strides \(8, 16\).*backbone's "
                                         r"out_strides \(8, 16, 32\)|rpn_head strides \(8, 16\)"):
        detector(neck=neck, rpn_head={**RPN, "strides": (8, 16)})
    with pytest.raises(ValueError, match="roi_head"):
        detector(roi_head=None)
    with pytest.raises(TypeError, match="TwoStageDetector: 'rpn_head' must be a config dict"):
        detector(rpn_head="RPNHead")
    with pytest.raises(ValueError, match="train_cfg"):
        detector(train_cfg=dict(rcnn=dict()))


def test_loss_predict_and_tensor_modes():
    torch.manual_seed(0)
    model = detector(train_cfg=dict(rpn_proposal=dict(nms_pre=100, max_per_img=20)))
    image, sample = one_image()
    inputs = torch.cat([image, image.flip(-1)])
    second = one_image()[1]
    second.gt_instances = InstanceData(bboxes=torch.tensor([[20.0, 16, 52, 52]]),
                                       labels=torch.tensor([0]))
    losses = model(inputs, [sample, second], mode="loss")
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"}
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())
    model.eval()
    given = [one_image()[1], one_image()[1]]
    with torch.no_grad():
        results = model(inputs, given, mode="predict")
        (rpn_cls, rpn_reg), (cls, reg) = model(inputs, mode="tensor")
    assert results[0] is given[0]
    assert all(r.pred_instances.bboxes.max() <= 128 for r in results)
    assert [c.shape[1] for c in rpn_cls] == [3, 3] and cls.shape[1] == 4 and reg.shape[1] == 12


def test_faster_rcnn_overfits_one_image_and_finds_the_box_in_original_coordinates():
    torch.manual_seed(0)
    model = detector()
    image, sample = one_image()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        losses = model(image, [sample], mode="loss")
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        result = model(image, [one_image()[1]], mode="predict")[0].pred_instances
    assert result.labels[0].item() == 2 and result.scores[0].item() > 0.5
    assert box_iou(result.bboxes[:1], torch.tensor([[24.0, 32, 88, 104]])).item() > 0.8
