"""MobileNetV3 against torchvision's mobilenet_v3_large / mobilenet_v3_small."""
import copy

import pytest
import torch
import torchvision
from mmcv.cnn import fuse_conv_bn
from torch import nn

from toolbox.models.backbones.mobilenet_v3 import MobileNetV3
from toolbox.registry import BACKBONES

INPUT = 64  # strides 4..32 -> 16, 8, 4, 2

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def torchvision_model(randomise_batchnorm):
    """``(arch, width_mult=1.0) ->`` torchvision's mobilenet_v3_{arch}, seeded,
    with random BN statistics, in eval mode."""
    def build(arch: str, width_mult: float = 1.0) -> nn.Module:
        torch.manual_seed(0)
        constructor = getattr(torchvision.models, f"mobilenet_v3_{arch}")
        return randomise_batchnorm(constructor(weights=None, width_mult=width_mult)).eval()
    return build


def reference_features(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Run torchvision's ``features`` layer by layer and keep, for each of
    the strides 4, 8, 16, 32, the output of the last layer at that stride
    (found from the output sizes, not from layer indices)."""
    last_at_size = {}
    with torch.no_grad():
        for layer in features:
            x = layer(x)
            last_at_size[x.shape[-1]] = x
    return [last_at_size[INPUT // s] for s in (4, 8, 16, 32)]


@pytest.fixture(scope="module")
def references(torchvision_model):
    return {arch: torchvision_model(arch) for arch in ("large", "small")}


@pytest.mark.parametrize("arch,width_mult", [("large", 1.0), ("small", 1.0), ("large", 0.75)])
def test_matches_torchvision_features(references, torchvision_model, assert_maps_close,
                                      assert_declared_outputs, arch, width_mult):
    ref = references[arch] if width_mult == 1.0 else torchvision_model(arch, width_mult)
    model = MobileNetV3(arch=arch, width_mult=width_mult).eval()
    result = model.load_reference(ref.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = model(x)
    assert len(outs) == 4
    assert_maps_close(outs, reference_features(ref.features, x), atol=1e-5)
    # Declared outputs agree with the maps actually returned.
    assert_declared_outputs(model, outs, INPUT)
    assert model.out_strides == (4, 8, 16, 32) and model.size_divisor == 32


@pytest.mark.parametrize("arch,width_mult", [("large", 1.0), ("small", 1.0),
                                              ("large", 0.5), ("small", 0.75)])
def test_parameter_count_equals_torchvision_features(arch, width_mult):
    with torch.device("meta"):
        ref = getattr(torchvision.models, f"mobilenet_v3_{arch}")(weights=None,
                                                                 width_mult=width_mult)
        model = MobileNetV3(arch=arch, width_mult=width_mult)
    expected = sum(p.numel() for p in ref.features.parameters())
    assert sum(p.numel() for p in model.parameters()) == expected


def test_paper_channel_widths():
    # Paper Tables 1/2: last block widths per stride and the final 1x1 conv.
    assert MobileNetV3("large").out_channels == (24, 40, 112, 960)
    assert MobileNetV3("small").out_channels == (16, 24, 48, 576)


def test_out_indices_select_and_prune(references, assert_maps_close):
    model = MobileNetV3(arch="large", out_indices=(1, 2)).eval()
    assert model.out_strides == (8, 16) and model.out_channels == (40, 112)
    assert model.size_divisor == 16
    assert not hasattr(model, "stage4")  # nothing after the last output is built
    result = model.load_reference(references["large"].state_dict())  # strict
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 3, INPUT, INPUT)
    with torch.no_grad():
        outs = model(x)
    assert_maps_close(outs, reference_features(references["large"].features, x)[1:3], atol=1e-5)


def test_frozen_stages_freeze_parameters_and_batchnorm():
    model = MobileNetV3(arch="small", frozen_stages=2)
    model.train()
    frozen, trainable = model.stages()[:3], model.stages()[3:]
    for stage in frozen:
        assert all(not p.requires_grad for p in stage.parameters())
        assert all(not m.training for m in stage.modules() if isinstance(m, nn.BatchNorm2d))
    for stage in trainable:
        assert all(p.requires_grad for p in stage.parameters())
        assert all(m.training for m in stage.modules() if isinstance(m, nn.BatchNorm2d))
    # Frozen BN statistics do not move during a training step; others do.
    before = model.stem.bn.running_mean.clone()
    later = model.stage3[0].project.bn.running_mean.clone()
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    assert torch.equal(model.stem.bn.running_mean, before)
    assert not torch.equal(model.stage3[0].project.bn.running_mean, later)
    assert model.stem.conv.weight.grad is None
    assert model.stage3[0].project.conv.weight.grad is not None


def test_norm_eval_keeps_every_batchnorm_in_eval():
    model = MobileNetV3(arch="small", norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(p.requires_grad for p in model.parameters())  # still trainable
    before = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(m.running_mean, b) for m, b in zip(bns, before))


def test_built_through_registry():
    model = BACKBONES.build(dict(type="MobileNetV3", arch="large"))
    assert isinstance(model, MobileNetV3) and model.out_channels == (24, 40, 112, 960)
    small = BACKBONES.build(dict(type="MobileNetV3", arch="small", out_indices=(3,)))
    assert small.out_channels == (576,) and small.out_strides == (32,)


def test_load_reference_from_file(tmp_path, references):
    ref = references["small"]
    path = tmp_path / "mobilenet_v3_small.pth"
    torch.save(ref.state_dict(), path)
    model = MobileNetV3(arch="small")
    model.load_reference(str(path))
    assert torch.equal(model.stem.conv.weight, ref.features[0][0].weight)
    assert torch.equal(model.stage4.last_conv.bn.running_var, ref.features[12][1].running_var)
    assert torch.equal(model.stage1[0].se.reduce.weight, ref.features[1].block[1].fc1.weight)


def test_conv_bn_pairs_fuse_with_mmcv(references):
    model = MobileNetV3(arch="large").eval()
    model.load_reference(references["large"].state_dict())
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, INPUT, INPUT)
    with torch.no_grad():
        for a, b in zip(model(x), fused(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_unknown_reference_key_is_an_error(references):
    state = dict(references["small"].state_dict())
    state["features.99.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="features.99.weight"):
        MobileNetV3(arch="small").load_reference(state)


@pytest.mark.parametrize("kwargs,name", [
    (dict(arch="medium"), "arch"),
    (dict(width_mult=0), "width_mult"),
    (dict(out_indices=(4,)), "out_indices"),
    (dict(out_indices=(2, 1)), "out_indices"),
    (dict(out_indices=()), "out_indices"),
    (dict(frozen_stages=5), "frozen_stages"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MobileNetV3(**kwargs)


@pytest.mark.parametrize("arch", ["large", "small"])
def test_stage_start_taps_with_frozen_bn_equal_torchvision_detection_extractor(
        arch, randomise_batchnorm, assert_maps_close):
    """``taps='stage_start'`` + FrozenBN is the body of torchvision's
    ``_mobilenet_extractor`` (every one of its stage indices)."""
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.ops import FrozenBatchNorm2d
    torch.manual_seed(0)
    ref = getattr(torchvision.models, f"mobilenet_v3_{arch}")(weights=None,
                                                              norm_layer=FrozenBatchNorm2d)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
    extractor = _mobilenet_extractor(ref, True, 6, returned_layers=list(range(6))).eval()
    model = MobileNetV3(arch=arch, taps="stage_start", out_indices=tuple(range(6)),
                        norm="FrozenBN").eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.load_reference(ref.state_dict())
    x = torch.randn(1, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = model(x)
        expected = list(extractor.body(x).values())
    assert_maps_close(outs, expected, atol=1e-6)
    assert model.out_channels == tuple(e.shape[1] for e in expected)
    assert model.out_strides == tuple(96 // e.shape[-2] for e in expected)
    two = MobileNetV3(arch=arch, taps="stage_start", out_indices=(4, 5))
    assert two.out_strides == (32, 32) and two.size_divisor == 32


def test_bad_taps_and_norm_are_named():
    with pytest.raises(ValueError, match="taps"):
        MobileNetV3(taps="middle")
    with pytest.raises(ValueError, match="norm"):
        MobileNetV3(norm="GN")
    with pytest.raises(ValueError, match="out_indices"):
        MobileNetV3(out_indices=(4,))  # only 4 outputs with taps='stage_end'
