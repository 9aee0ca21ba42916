"""The head toolkit's rules: sub-config defaults merge, input shapes, the
deprecated aliases of the moved helpers."""
import warnings

import pytest

from toolbox.models.heads.parts import (loss_with_defaults, merge_cfg, resolve_input_shape,
                                        uniform_channels, with_defaults)
from toolbox.registry import HEADS, ConfigArgumentError
from toolbox.structures import AnchorGenerator, FeatureSpec, MaxIoUAssigner
from toolbox.structures.feature_spec import specs_from

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = specs_from((16, 16), (8, 16))


def test_partial_part_config_merges_over_the_default():
    assigner = with_defaults(dict(pos_iou_thr=0.6), dict(pos_iou_thr=0.5, neg_iou_thr=0.4,
                                                         ignore_iof_thr=0.5),
                             MaxIoUAssigner, "Head.assigner")
    assert (assigner.pos_iou_thr, assigner.neg_iou_thr, assigner.ignore_iof_thr) == (0.6, 0.4, 0.5)
    with pytest.raises(ConfigArgumentError, match="pos_iou"):
        with_defaults(dict(pos_iou=0.6), {}, MaxIoUAssigner, "Head.assigner")


def test_anchor_generator_alternatives_replace_the_default_way():
    default = dict(octave_base_scale=4, scales_per_octave=3, ratios=(0.5, 1.0, 2.0))
    gen = with_defaults(dict(sizes=((32,), (64,))), default, AnchorGenerator, "g", strides=(8, 16))
    assert gen.sizes == ((32.0,), (64.0,)) and gen.num_base_anchors == 3
    gen = with_defaults(dict(scales=(2.0,)), default, AnchorGenerator, "g", strides=(8, 16))
    assert gen.num_base_anchors == 3  # one scale, the default's three ratios


def test_loss_of_another_type_replaces_same_type_merges():
    default = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)
    merged = loss_with_defaults(dict(loss_weight=2.0), default)
    assert type(merged).__name__ == "FocalLoss" and merged.gamma == 2.0
    assert merged.loss_weight == 2.0
    other = loss_with_defaults(dict(type="CrossEntropyLoss", use_sigmoid=True), default)
    assert type(other).__name__ == "CrossEntropyLoss"


def test_delete_key_replaces_instead_of_merging():
    default = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, ignore_iof_thr=0.5)
    assigner = with_defaults(dict(_delete_=True, pos_iou_thr=0.7, neg_iou_thr=0.3), default,
                             MaxIoUAssigner, "Head.assigner")
    assert (assigner.pos_iou_thr, assigner.ignore_iof_thr) == (0.7, -1)  # class default
    focal = dict(type="FocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)
    loss = loss_with_defaults(dict(_delete_=True, type="FocalLoss", gamma=1.0), focal)
    assert (loss.gamma, loss.alpha) == (1.0, type(loss)().alpha)
    assert merge_cfg("Head", dict(a=1, b=2), dict(_delete_=True, b=3), "t") == dict(a=1, b=3)


def test_plain_dict_config_accepts_the_default_keys_only():
    assert merge_cfg("Head", dict(a=1, b=2), dict(b=3), "test_cfg") == dict(a=1, b=3)
    with pytest.raises(ValueError, match=r"Head: unknown test_cfg key\(s\) \['c'\]; accepted"):
        merge_cfg("Head", dict(a=1), dict(c=3), "test_cfg")


def test_retina_head_partial_assigner_keeps_ignore_iof_thr():
    head = HEADS.build(dict(type="RetinaHead", num_classes=2, in_channels=8, feat_channels=8,
                            stacked_convs=1, strides=(8, 16),
                            assigner=dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0),
                            test_cfg=dict(max_per_img=7)))
    assert head.assigner.ignore_iof_thr == 0.5  # the documented default survives
    assert head.test_cfg == dict(nms_pre=1000, score_thr=0.05, iou_thr=0.5, max_per_img=7)


def test_input_shape_fills_and_checks_channels_and_strides():
    assert resolve_input_shape("H", SPECS, None, None) == ((16, 16), (8, 16))
    assert resolve_input_shape("H", SPECS, 16, (8, 16)) == (16, (8, 16))
    assert resolve_input_shape("H", None, 4, None) == (4, None)
    with pytest.raises(ValueError, match="H: 'in_channels' 8 disagrees"):
        resolve_input_shape("H", SPECS, 8, None)
    with pytest.raises(ValueError, match=r"H: 'strides' \(4, 8\) disagree"):
        resolve_input_shape("H", SPECS, None, (4, 8))
    with pytest.raises(ValueError, match="H: give 'in_channels' or 'input_shape'"):
        resolve_input_shape("H", None, None, None)
    with pytest.raises(ValueError, match="H: 'in_channels' must be one int"):
        uniform_channels((8, 16), "H")


@pytest.mark.parametrize("cfg", [
    dict(type="RetinaHead", num_classes=2, feat_channels=8, stacked_convs=1),
    dict(type="GARetinaHead", num_classes=2, feat_channels=8, stacked_convs=1),
    dict(type="RPNHead", feat_channels=8),
    dict(type="GARPNHead", feat_channels=8),
    dict(type="RefineDetHead", num_classes=2, feat_channels=8),
    dict(type="RoIBoxHead", num_classes=2, fc_channels=8),
    dict(type="DETRHead", num_classes=2, embed_dims=8, num_queries=2,
         transformer=dict(nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=8)),
], ids=lambda c: c["type"])
def test_every_head_takes_input_shape(cfg):
    head = HEADS.build(dict(cfg, input_shape=SPECS))
    assert head.in_channels in (16, (16, 16))
    if hasattr(head, "strides"):
        assert tuple(head.strides) == (8, 16)
        with pytest.raises(ValueError, match=cfg["type"]):
            HEADS.build(dict(cfg, input_shape=SPECS, strides=(4, 8)))
    with pytest.raises(ValueError, match=cfg["type"]):
        HEADS.build(dict(cfg, input_shape=SPECS, in_channels=32))


def test_detr_head_reads_the_last_input_spec():
    head = HEADS.build(dict(type="DETRHead", num_classes=2, embed_dims=8, num_queries=2,
                            input_shape=(FeatureSpec(4, 16), FeatureSpec(12, 32)),
                            transformer=dict(nhead=2, num_encoder_layers=1,
                                             num_decoder_layers=1, dim_feedforward=8)))
    assert head.in_channels == 12


def test_refinedet_loss_cls_from_config():
    base = dict(type="RefineDetHead", num_classes=2, in_channels=8, strides=(8,),
                feat_channels=8)
    head = HEADS.build(dict(base, loss_cls=dict(loss_weight=2.0)))
    assert head.loss_cls.reduction == "none" and head.loss_cls.loss_weight == 2.0
    with pytest.raises(ValueError, match="reduction='none'"):
        HEADS.build(dict(base, loss_cls=dict(reduction="mean")))


def test_moved_helpers_keep_deprecated_aliases():
    from toolbox.models.heads import parts
    from toolbox.models.layers import anchor_guidance
    from toolbox.structures import box_mapping
    with pytest.warns(DeprecationWarning, match="toolbox.models.heads.parts.build_part"):
        from toolbox.models.heads._common import build_part
    assert build_part is parts.build_part
    with pytest.warns(DeprecationWarning, match="box_mapping.boxes_to_original"):
        from toolbox.models.heads._common import boxes_to_original
    assert boxes_to_original is box_mapping.boxes_to_original
    with pytest.warns(DeprecationWarning, match="layers.anchor_guidance.AnchorGuidance"):
        from toolbox.models.heads._guided_anchor import AnchorGuidance
    assert AnchorGuidance is anchor_guidance.AnchorGuidance
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImportError):
            from toolbox.models.heads._common import finish_proposals  # noqa: F401


def test_heads_predict_without_rescale():
    import inspect
    for name in ("RetinaHead", "GARetinaHead", "RPNHead", "GARPNHead", "RefineDetHead",
                 "RoIBoxHead", "DETRHead"):
        cls = HEADS.get(name)
        for method in ("predict", "predict_by_feat"):
            if hasattr(cls, method):
                assert "rescale" not in inspect.signature(getattr(cls, method)).parameters, name
