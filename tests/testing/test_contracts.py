"""``toolbox.testing``'s contract checkers: they pass the built-ins and catch
the mistakes they exist for (each broken component below is one mistake)."""
import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn

from toolbox import testing
from toolbox.models.heads.retina_head import RetinaHead
from toolbox.testing import ContractError

RETINA = dict(type="RetinaHead", feat_channels=16, stacked_convs=1,
              anchor_generator=dict(octave_base_scale=4, scales_per_octave=1))


def test_builtins_meet_their_contracts():
    backbone = testing.check_backbone(dict(type="MobileNetV3", arch="small", out_indices=(1, 2, 3)))
    testing.check_neck(dict(type="FPN", out_channels=16, num_outs=4),
                       backbone.out_channels, backbone.out_strides)
    testing.check_loss(dict(type="FocalLoss"))
    testing.check_loss(dict(type="GIoULoss"), kind="regression")
    out = testing.check_head(RETINA, in_channels=16, strides=(8, 16), num_classes=3)
    assert len(out["predictions"]) == 2


class WrongDeclaration(nn.Module):
    out_channels, out_strides, size_divisor = (8, 99), (4, 8), 8

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, 4, 1)
        self.b = nn.Conv2d(8, 16, 3, 2, 1)

    def forward(self, x):
        x = self.a(x)
        return x, self.b(x)


def test_backbone_whose_declaration_lies_is_caught():
    with pytest.raises(ContractError, match=r"output 1 .* output_shape\(\)\[1\] = "
                                            r"FeatureSpec\(channels=99, stride=8\)"):
        testing.check_backbone(WrongDeclaration())


class ListNeck(nn.Module):
    out_channels, out_strides = (8,), (8,)

    def forward(self, feats):
        return list(feats)


def test_neck_returning_a_list_is_caught():
    with pytest.raises(ContractError, match="tuple"):
        testing.check_neck(ListNeck(), in_channels=(8,), in_strides=(8,))


class IgnoresWeight(nn.Module):
    def forward(self, pred, target, weight=None, avg_factor=None):
        return nn.functional.cross_entropy(pred, target.clamp(max=pred.shape[1] - 1))


class IgnoresAvgFactor(nn.Module):
    def forward(self, pred, target, weight=None, avg_factor=None):
        loss = nn.functional.binary_cross_entropy_with_logits(
            pred, nn.functional.one_hot(target, pred.shape[1] + 1)[:, :-1].float(),
            reduction="none").sum(1)
        if weight is not None:
            loss = loss * weight
        return loss.mean()


def test_loss_that_ignores_weight_or_avg_factor_is_caught():
    with pytest.raises(ContractError, match="weight=zeros"):
        testing.check_loss(IgnoresWeight())
    with pytest.raises(ContractError, match="avg_factor"):
        testing.check_loss(IgnoresAvgFactor())


class UnclippedHead(RetinaHead):
    def predict(self, feats, data_samples=None):
        results = super().predict(feats, data_samples)
        out = []
        for r in results:
            out.append(InstanceData(bboxes=torch.tensor([[-20.0, 0, 10, 10]]),
                                    scores=torch.tensor([0.9]), labels=torch.tensor([0])))
        return out


def test_head_predicting_boxes_outside_the_image_is_caught():
    head = UnclippedHead(num_classes=3, in_channels=16, strides=(8, 16), feat_channels=16,
                         stacked_convs=1,
                         anchor_generator=dict(octave_base_scale=4, scales_per_octave=1))
    with pytest.raises(ContractError, match="leave the 64x64 image"):
        testing.check_head(head, in_channels=16, strides=(8, 16), num_classes=3)


def test_transform_contract_and_samples():
    out = testing.check_transform(dict(type="RandomFlip", prob=1.0))
    assert out["img"].shape == (64, 64, 3)
    inputs, samples = testing.det_batch(batch=3, num_objects=[0, 1, 2])
    assert inputs.shape == (3, 3, 64, 64)
    assert [len(s.gt_instances) for s in samples] == [0, 1, 2]
    seg_inputs, seg_samples = testing.seg_batch(batch=2, size=(32, 48), num_classes=4)
    assert seg_samples[0].gt_sem_seg.shape == (32, 48) and seg_samples[0].gt_sem_seg.max() < 4


def test_isolated_plugins_restores_the_environment(monkeypatch):
    from toolbox.registry import NECKS
    monkeypatch.delenv("TOOLBOX_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    with testing.isolated_plugins(TOOLBOX_DISABLE_PLUGIN_AUTOLOAD="1"):
        assert "TemplateNeck" not in NECKS.names()
    assert "TemplateNeck" in NECKS.names()
