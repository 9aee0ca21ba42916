import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData
from torch import nn

from toolbox.models.backbones.base import Backbone
from toolbox.models.necks.base import Neck
from toolbox.registry import BACKBONES, MODELS, NECKS
from toolbox.structures import DetDataSample

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors, shared CPU


class StandInBackbone(Backbone):
    """Stand-in backbone: maps of widths ``channels`` at strides 8, 16."""

    def __init__(self, channels=(8, 12)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 8, 1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(channels[0], channels[1], 3, 2, 1), nn.ReLU())
        self.declare_outputs(channels, (8, 16), size_divisor=16)

    def forward(self, x):
        c3 = self.stem(x)
        return c3, self.down(c3)


class StandInNeck(Neck):
    """Stand-in neck: 1x1 lateral convs to ``out_width`` plus one extra
    stride-2 level; records what it was given."""

    def __init__(self, in_channels, in_strides, out_width=6):
        super().__init__()
        self.in_channels, self.in_strides = tuple(in_channels), tuple(in_strides)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_width, 1) for c in in_channels)
        self.extra = nn.Conv2d(out_width, out_width, 3, 2, 1)
        self.out_channels = (out_width,) * (len(in_channels) + 1)
        self.out_strides = tuple(in_strides) + (in_strides[-1] * 2,)

    def forward(self, feats):
        outs = [conv(f) for conv, f in zip(self.lateral, feats)]
        return tuple(outs) + (self.extra(outs[-1]),)


class ChannelsOnlyNeck(Neck):
    """A neck that takes no in_strides: the detector must not pass one."""

    def __init__(self, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels[-1], 4, 1)
        self.out_channels, self.out_strides = (4,), (16,)

    def forward(self, feats):
        return (self.conv(feats[-1]),)


@pytest.fixture(autouse=True)
def stand_ins():
    for module in (StandInBackbone,):
        BACKBONES.register_module(module=module, force=True)
    for module in (StandInNeck, ChannelsOnlyNeck):
        NECKS.register_module(module=module, force=True)


HEAD = dict(type="RetinaHead", num_classes=2, feat_channels=8, stacked_convs=1,
            anchor_generator=dict(scales=(4.0,), ratios=(1.0,)))


def detector(neck=dict(type="StandInNeck"), backbone=dict(type="StandInBackbone"), **head):
    return MODELS.build(dict(type="SingleStageDetector", backbone=backbone, neck=neck,
                             bbox_head={**HEAD, **head}))


def samples(n=2):
    out = []
    for i in range(n):
        s = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(128, 128),
                                        scale_factor=(0.5, 0.5), img_id=i))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[8.0, 8, 40, 36]]),
                                      labels=torch.tensor([i % 2]))
        s.ori_gt_instances = InstanceData(bboxes=torch.tensor([[16.0, 16, 80, 72]]),
                                          labels=torch.tensor([i % 2]))
        out.append(s)
    return out


def test_channels_and_strides_are_inferred_from_backbone_and_neck():
    model = detector()
    assert model.neck.in_channels == (8, 12) and model.neck.in_strides == (8, 16)
    assert model.bbox_head.in_channels == 6
    assert model.bbox_head.strides == (8, 16, 32)
    assert model.bbox_head.prior_generator.strides == (8, 16, 32)
    only_channels = detector(neck=dict(type="ChannelsOnlyNeck"))
    assert only_channels.bbox_head.in_channels == 4 and only_channels.bbox_head.strides == (16,)
    explicit = detector(neck=dict(type="StandInNeck", in_channels=(8, 12), in_strides=(8, 16),
                                  out_width=5), in_channels=5, strides=(8, 16, 32))
    assert explicit.bbox_head.in_channels == 5


def test_without_neck_head_reads_the_backbone():
    model = detector(neck=None, backbone=dict(type="StandInBackbone", channels=(8, 8)))
    assert model.bbox_head.in_channels == 8 and model.bbox_head.strides == (8, 16)
    cls, reg = model(torch.randn(1, 3, 64, 64), mode="tensor")
    assert [c.shape[-1] for c in cls] == [8, 4] and reg[0].shape[1] == 4
    with pytest.raises(ValueError, match="in_channels"):
        detector(neck=None)  # widths (8, 12) cannot feed one shared head


def test_loss_predict_and_tensor_modes():
    model = detector()
    inputs = torch.randn(2, 3, 64, 64)
    losses = model(inputs, samples(), mode="loss")
    assert set(losses) == {"loss_cls", "loss_bbox"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    given = samples()
    with torch.no_grad():
        results = model(inputs, given, mode="predict")
    assert results[0] is given[0] and results[1].img_id == 1
    assert "ori_gt_instances" in results[0] and results[0].batch_input_shape == (64, 64)
    preds = results[0].pred_instances
    assert preds.bboxes.shape[1] == 4 and len(preds.scores) == len(preds.labels)
    assert (preds.bboxes[:, 2] <= 128).all()  # clipped to ori_shape
    cls, reg = model(inputs, mode="tensor")
    assert len(cls) == len(reg) == 3
    with pytest.raises(ValueError, match="mode"):
        model(inputs, mode="train")
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), mode="tensor")


def test_train_and_val_step_through_mmengine():
    model = detector()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    # images of different sizes are padded to the size divisor (16)
    data = dict(inputs=[torch.randn(3, 64, 64), torch.randn(3, 50, 60)], data_samples=samples())
    data["data_samples"][1].set_metainfo(dict(img_shape=(50, 60)))
    log_vars = model.train_step(data, optim)
    assert {"loss", "loss_cls", "loss_bbox"} <= set(log_vars)
    assert model._batch_inputs(data["inputs"]).shape == (2, 3, 64, 64)
    model.eval()
    out = model.val_step(dict(inputs=torch.randn(1, 3, 60, 60), data_samples=samples(1)))
    assert out[0].batch_input_shape == (64, 64) and "pred_instances" in out[0]


def test_missing_head_is_explained():
    with pytest.raises(ValueError, match="bbox_head"):
        MODELS.build(dict(type="SingleStageDetector", backbone=dict(type="StandInBackbone")))
