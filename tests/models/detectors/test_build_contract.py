"""The build contract (toolbox.models.builder): parts declare output_shape(),
necks and heads receive input_shape, old-style plugins keep working with a
DeprecationWarning, and the moved builders keep their old names."""
import warnings

import pytest
import torch
from torch import nn

from toolbox.models import builder
from toolbox.models.backbones.base import Backbone
from toolbox.models.necks.base import Neck
from toolbox.models.necks.fpn import FPN
from toolbox.registry import BACKBONES, MODELS, NECKS
from toolbox.structures import FeatureSpec

pytestmark = pytest.mark.usefixtures("one_thread")

HEAD = dict(type="RetinaHead", num_classes=2, feat_channels=8, stacked_convs=1,
            anchor_generator=dict(octave_base_scale=4, scales_per_octave=1, ratios=(1.0,)))


class TwoLevelBackbone(Backbone):
    def __init__(self):
        super().__init__()
        self.c3 = nn.Conv2d(3, 8, 3, 8, 1)
        self.c4 = nn.Conv2d(8, 12, 3, 2, 1)
        self.declare_outputs((8, 12), (8, 16), size_divisor=16)

    def forward(self, x):
        c3 = self.c3(x)
        return c3, self.c4(c3)


class OldStyleNeck(Neck):
    """A plugin neck written before input_shape: takes in_channels only and
    assigns out_channels / out_strides."""

    def __init__(self, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels[-1], 4, 1)
        self.out_channels, self.out_strides = (4,), (16,)

    def forward(self, feats):
        return (self.conv(feats[-1]),)


class RecordingNeck(Neck):
    def __init__(self, input_shape=None, width=6):
        super().__init__()
        self.given = tuple(input_shape)
        self.lateral = nn.ModuleList(nn.Conv2d(s.channels, width, 1) for s in input_shape)
        self.declare_outputs(specs=[FeatureSpec(width, s.stride) for s in input_shape])

    def forward(self, feats):
        return tuple(conv(f) for conv, f in zip(self.lateral, feats))


@pytest.fixture(autouse=True)
def stand_ins():
    BACKBONES.register_module(module=TwoLevelBackbone, force=True)
    NECKS.register_module(module=OldStyleNeck, force=True)
    NECKS.register_module(module=RecordingNeck, force=True)


def detector(neck, **head):
    return MODELS.build(dict(type="SingleStageDetector", backbone=dict(type="TwoLevelBackbone"),
                             neck=neck, bbox_head={**HEAD, **head}))


def test_backbones_and_necks_declare_feature_specs():
    backbone = TwoLevelBackbone()
    assert backbone.output_shape() == (FeatureSpec(8, 8), FeatureSpec(12, 16))
    assert backbone.out_channels == (8, 12) and backbone.out_strides == (8, 16)
    assert backbone.size_divisor == 16 and backbone.spatial_dims == 2
    neck = FPN(out_channels=4, input_shape=backbone.output_shape(), num_outs=3)
    assert neck.in_channels == (8, 12) and neck.in_strides == (8, 16)
    assert neck.output_shape() == (FeatureSpec(4, 8), FeatureSpec(4, 16), FeatureSpec(4, 32))
    assert FPN((8, 12), 4, (8, 16), input_shape=backbone.output_shape()).in_channels == (8, 12)
    with pytest.raises(ValueError, match=r"FPN: 'in_strides' \(8, 32\) disagrees"):
        FPN((8, 12), 4, (8, 32), input_shape=backbone.output_shape())
    with pytest.raises(AttributeError):
        del backbone.out_channels


def test_every_part_receives_the_previous_parts_output_shape():
    model = detector([dict(type="RecordingNeck"), dict(type="RecordingNeck", width=5)])
    assert model.neck[0].given == model.backbone.output_shape()
    assert model.neck[1].given == (FeatureSpec(6, 8), FeatureSpec(6, 16))
    assert model.neck.output_shape() == (FeatureSpec(5, 8), FeatureSpec(5, 16))
    assert model.bbox_head.in_channels == 5 and tuple(model.bbox_head.strides) == (8, 16)
    assert model.size_divisor == 16
    with pytest.raises(ValueError, match=r"bbox_head strides \(8, 16, 32\).*neck's out_strides "
                                         r"\(8, 16\)"):
        detector(dict(type="RecordingNeck"), strides=(8, 16, 32))


def test_old_style_plugins_are_filled_the_old_way_with_a_warning():
    with pytest.warns(DeprecationWarning, match="OldStyleNeck takes no 'input_shape'"):
        model = detector(dict(type="OldStyleNeck"))
    assert model.neck.output_shape() == (FeatureSpec(4, 16),)
    assert model.bbox_head.in_channels == 4
    with pytest.warns(DeprecationWarning, match="assigning 'out_channels' is deprecated"):
        OldStyleNeck((8, 12))


def test_moved_builders_keep_their_old_names_with_a_warning():
    from toolbox.models.detectors import base
    with pytest.warns(DeprecationWarning, match="toolbox.models.builder.NeckChain"):
        assert base.NeckChain is builder.NeckChain
    with pytest.warns(DeprecationWarning, match="build_component"):
        neck = base.build_component(dict(type="FPN", out_channels=4), NECKS, "neck",
                                    {"in_channels": ((8, 12), "backbone"),
                                     "in_strides": ((8, 16), "backbone")}, "Owner")
    assert neck.in_strides == (8, 16)
    with pytest.warns(DeprecationWarning, match="output_shape_of"):
        assert base.declared(neck, "out_strides") == (8, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        detector(dict(type="FPN", out_channels=4))(torch.zeros(1, 3, 32, 32), mode="tensor")
