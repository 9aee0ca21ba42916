"""Detectors map the heads' input-coordinate boxes back to the original
image once (BaseDetector._attach_predictions), crop- and flip-aware."""
import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn

from toolbox.models.backbones.base import Backbone
from toolbox.registry import BACKBONES, HEADS, MODELS
from toolbox.structures import DetDataSample

pytestmark = pytest.mark.usefixtures("one_thread")

BOXES = [[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 64.0, 64.0]]


class StrideEightBackbone(Backbone):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 8, 1)
        self.declare_outputs((4,), (8,), size_divisor=8)

    def forward(self, x):
        return (self.conv(x),)


class FixedBoxHead(nn.Module):
    """Predicts ``BOXES`` (in img_shape coordinates) for every image."""

    def __init__(self, input_shape=None, test_cfg=None):
        super().__init__()
        self.input_shape = input_shape
        self.test_cfg = dict(test_cfg or {})

    def predict(self, feats, data_samples):
        return [InstanceData(bboxes=torch.tensor(BOXES), scores=torch.ones(2),
                             labels=torch.zeros(2, dtype=torch.long)) for _ in data_samples]


@pytest.fixture(autouse=True)
def stand_ins():
    BACKBONES.register_module(module=StrideEightBackbone, force=True)
    HEADS.register_module(module=FixedBoxHead, force=True)


def cropped_flipped_resized():
    """A 300 x 200 (w x h) original resized by 0.5 to 150 x 100, the 64 x 64
    window at (x, y) = (20, 10) cropped, then flipped horizontally."""
    return DetDataSample(metainfo=dict(ori_shape=(200, 300), scale_factor=(0.5, 0.5),
                                       crop_offset=(20, 10), img_shape=(64, 64), flip=True,
                                       flip_direction="horizontal"))


def test_single_stage_maps_back_through_flip_crop_and_scale():
    model = MODELS.build(dict(type="SingleStageDetector", backbone=dict(type="StrideEightBackbone"),
                              bbox_head=dict(type="FixedBoxHead"))).eval()
    assert model.bbox_head.input_shape[0].channels == 4
    result, = model.predict(torch.zeros(1, 3, 64, 64), [cropped_flipped_resized()])
    # [10, 20, 30, 40]: unflip in w=64 -> [34, 20, 54, 40]; + (20, 10) -> [54, 30, 74, 50];
    # / 0.5 -> [108, 60, 148, 100]. [0, 0, 64, 64] -> [0, 0, 64, 64] -> [20, 10, 84, 74]
    # -> [40, 20, 168, 148].
    torch.testing.assert_close(result.pred_instances.bboxes,
                               torch.tensor([[108.0, 60, 148, 100], [40, 20, 168, 148]]))
    raw, = model.predict(torch.zeros(1, 3, 64, 64), [cropped_flipped_resized()], rescale=False)
    torch.testing.assert_close(raw.pred_instances.bboxes, torch.tensor(BOXES))


def test_mapped_boxes_are_clipped_to_the_original_unless_detr_says_not():
    sample = DetDataSample(metainfo=dict(ori_shape=(40, 40), scale_factor=(2.0, 2.0),
                                         crop_offset=(30, 0), img_shape=(64, 64)))
    single = MODELS.build(dict(type="SingleStageDetector",
                               backbone=dict(type="StrideEightBackbone"),
                               bbox_head=dict(type="FixedBoxHead"))).eval()
    # [0, 0, 64, 64] + (30, 0) -> [30, 0, 94, 64] / 2 -> [15, 0, 47, 32], clipped: x2 = 40
    boxes = single.predict(torch.zeros(1, 3, 64, 64), [sample])[0].pred_instances.bboxes
    torch.testing.assert_close(boxes[1], torch.tensor([15.0, 0, 40, 32]))
    detr = MODELS.build(dict(type="DETR", backbone=dict(type="StrideEightBackbone"),
                             bbox_head=dict(type="FixedBoxHead",
                                            test_cfg=dict(clip_boxes=False)))).eval()
    sample = DetDataSample(metainfo=sample.metainfo)
    boxes = detr.predict(torch.zeros(1, 3, 64, 64), [sample])[0].pred_instances.bboxes
    torch.testing.assert_close(boxes[1], torch.tensor([15.0, 0, 47, 32]))
