"""ResNet against torchvision's resnet18/34/50/101/152 (and the DC5 variant)."""
import copy

import pytest
import torch
import torchvision
from mmcv.cnn import fuse_conv_bn
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from toolbox.models.backbones.resnet import ResNet
from toolbox.registry import BACKBONES

INPUT = 64

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def torchvision_resnet(randomise_batchnorm):
    """``(depth, dc5=False) ->`` torchvision's resnet{depth} (DC5: C5 dilated),
    seeded, with random BN statistics, in eval mode."""
    def build(depth: int, dc5: bool = False) -> nn.Module:
        torch.manual_seed(0)
        kwargs = dict(replace_stride_with_dilation=[False, False, True]) if dc5 else {}
        model = getattr(torchvision.models, f"resnet{depth}")(weights=None, **kwargs)
        return randomise_batchnorm(model).eval()
    return build


def reference_features(tv: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """C2..C5 by running torchvision's modules in their documented order."""
    with torch.no_grad():
        x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        outs = []
        for layer in (tv.layer1, tv.layer2, tv.layer3, tv.layer4):
            x = layer(x)
            outs.append(x)
    return outs


@pytest.fixture(scope="module")
def resnet18(torchvision_resnet):
    return torchvision_resnet(18)


@pytest.fixture(scope="module")
def resnet50_dc5(torchvision_resnet):
    return torchvision_resnet(50, dc5=True)


@pytest.fixture(scope="module")
def check_equivalence(assert_maps_close, assert_declared_outputs):
    """``(model, ref, atol=1e-5, rtol=0) -> outs``: ``model`` loads ``ref``'s
    weights strictly and returns C2..C5 as ``ref`` computes them, with the
    declared channels and strides."""
    def check(model: ResNet, ref: nn.Module, atol: float = 1e-5, rtol: float = 0.0):
        result = model.load_reference(ref.state_dict())
        assert not result.missing_keys and not result.unexpected_keys
        x = torch.randn(1, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            outs = model.eval()(x)
        assert len(outs) == 4
        assert_maps_close(outs, reference_features(ref, x), atol=atol, rtol=rtol)
        assert_declared_outputs(model, outs, INPUT)
        return outs
    return check


def test_resnet18_matches_torchvision(check_equivalence, resnet18):
    check_equivalence(ResNet(depth=18), resnet18)


def test_resnet50_matches_torchvision(check_equivalence, torchvision_resnet):
    model = ResNet(depth=50)
    check_equivalence(model, torchvision_resnet(50))
    assert model.out_channels == (256, 512, 1024, 2048)
    assert model.out_strides == (4, 8, 16, 32) and model.size_divisor == 32


def test_resnet50_dc5_matches_torchvision_dilation(check_equivalence, resnet50_dc5):
    model = ResNet(depth=50, dilate_c5=True)
    outs = check_equivalence(model, resnet50_dc5)
    assert model.out_strides == (4, 8, 16, 16) and model.size_divisor == 16
    assert outs[3].shape[-1] == outs[2].shape[-1] == INPUT // 16
    assert model.layer4[0].conv2.dilation == (1, 1)  # first block keeps dilation 1
    assert model.layer4[1].conv2.dilation == (2, 2)


def test_frozen_bn_loads_batchnorm_weights(check_equivalence, resnet18):
    # DETR's set-up: torchvision BN weights into FrozenBatchNorm2d. Both
    # compute the same affine map but round differently (FrozenBN folds the
    # scale first): the tolerance is ~1e-5 of the maps' magnitude (~20).
    model = ResNet(depth=18, norm="FrozenBN")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) == 20
    check_equivalence(model, resnet18, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_parameter_count_equals_torchvision_without_fc(depth):
    with torch.device("meta"):
        ref = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        model = ResNet(depth=depth)
    expected = sum(p.numel() for name, p in ref.named_parameters() if not name.startswith("fc."))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_out_indices_select_and_prune(resnet18, assert_maps_close):
    model = ResNet(depth=18, out_indices=(1, 2)).eval()
    assert model.out_channels == (128, 256) and model.out_strides == (8, 16)
    assert not hasattr(model, "layer4")
    result = model.load_reference(resnet18.state_dict())  # strict
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(1, 3, INPUT, INPUT)
    with torch.no_grad():
        outs = model(x)
    assert_maps_close(outs, reference_features(resnet18, x)[1:3], atol=1e-5)


def test_frozen_stages_freeze_parameters_and_batchnorm():
    model = ResNet(depth=18, frozen_stages=1).train()
    for stage in (model.stem, model.layer1):
        assert all(not p.requires_grad for p in stage.parameters())
        assert all(not m.training for m in stage.modules() if isinstance(m, nn.BatchNorm2d))
    for stage in (model.layer2, model.layer3, model.layer4):
        assert all(p.requires_grad for p in stage.parameters())
        assert all(m.training for m in stage.modules() if isinstance(m, nn.BatchNorm2d))
    frozen_mean = model.layer1[0].bn1.running_mean.clone()
    live_mean = model.layer2[0].bn1.running_mean.clone()
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    assert torch.equal(model.layer1[0].bn1.running_mean, frozen_mean)
    assert not torch.equal(model.layer2[0].bn1.running_mean, live_mean)
    assert model.stem.conv.weight.grad is None and model.layer2[0].conv1.weight.grad is not None


def test_norm_eval_keeps_every_batchnorm_in_eval():
    model = ResNet(depth=18, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 20 and all(not m.training for m in bns)
    assert all(p.requires_grad for p in model.parameters())


def test_built_through_registry():
    model = BACKBONES.build(dict(type="ResNet", depth=18, norm="FrozenBN", dilate_c5=False))
    assert isinstance(model, ResNet) and model.out_channels == (64, 128, 256, 512)


def test_load_reference_from_file(tmp_path, resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18.state_dict(), path)
    model = ResNet(depth=18)
    model.load_reference(path)
    assert torch.equal(model.stem.conv.weight, resnet18.conv1.weight)
    assert torch.equal(model.stem.bn.running_var, resnet18.bn1.running_var)
    assert torch.equal(model.layer3[0].downsample[1].weight,
                       resnet18.layer3[0].downsample[1].weight)


def test_conv_bn_pairs_fuse_with_mmcv(resnet18):
    model = ResNet(depth=18).eval()
    model.load_reference(resnet18.state_dict())
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, INPUT, INPUT)
    with torch.no_grad():
        for a, b in zip(model(x), fused(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_unknown_reference_key_is_an_error(resnet18):
    state = dict(resnet18.state_dict())
    state["head.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="head.weight"):
        ResNet(depth=18).load_reference(state)


@pytest.mark.parametrize("kwargs,name", [
    (dict(depth=20), "depth"),
    (dict(norm="GN"), "norm"),
    (dict(out_indices=(0, 4)), "out_indices"),
    (dict(frozen_stages=-2), "frozen_stages"),
    (dict(depth=18, dilate_c5=True), "dilate_c5"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ResNet(**kwargs)


def test_norm_eps_reaches_every_norm_layer():
    model = ResNet(depth=18, norm="FrozenBN", norm_eps=0.0)
    norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) > 10 and all(m.eps == 0.0 for m in norms)
    assert all(m.eps == 1e-5 for m in ResNet(depth=18).modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ValueError, match="norm_eps"):
        ResNet(depth=18, norm_eps=-1)


def test_frozen_stages_without_eval_keep_batchnorm_training():
    """frozen_stages_eval=False is torchvision's trainable_backbone_layers: no gradients in the
    frozen stages, but their BatchNorms follow train() (batch statistics)."""
    model = ResNet(depth=18, frozen_stages=1, frozen_stages_eval=False).train()
    assert model.stem.bn.training and model.layer1[0].bn1.training
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not ResNet(depth=18, frozen_stages=1).train().layer1[0].bn1.training
    assert not model.eval().layer1[0].bn1.training
