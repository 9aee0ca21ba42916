"""RefineDet's VGG-16 against torchvision's vgg16 / vgg16_bn."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from toolbox.models.backbones.vgg import VGG, L2Norm
from toolbox.registry import BACKBONES

INPUT = 64

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval()


def relu_outputs(features: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of every ReLU of torchvision's ``features``: index 9 is
    relu4_3 and index 12 relu5_3 (13 conv + ReLU pairs)."""
    outs = []
    with torch.no_grad():
        for layer in features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                outs.append(x)
    return outs


@pytest.mark.parametrize("norm", [None, "BN"])
def test_conv4_3_and_conv5_3_match_torchvision(vgg16, randomise_batchnorm, assert_maps_close,
                                               norm):
    if norm == "BN":  # vgg16_bn's ``features``, built by torchvision's own code
        torch.manual_seed(0)
        features = randomise_batchnorm(make_layers(cfgs["D"], batch_norm=True)).eval()
        state = {f"features.{k}": v for k, v in features.state_dict().items()}
    else:
        features, state = vgg16.features, vgg16.state_dict()
    x = torch.randn(1, 3, INPUT, INPUT, generator=torch.Generator().manual_seed(1))
    relus = relu_outputs(features, x)
    conv4_3, conv5_3 = relus[9], relus[12]

    raw = VGG(norm=norm, out_indices=(0, 1), l2_norm_scales=None).eval()
    result = raw.load_reference(state)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        out4, out5 = raw(x)
    assert out4.shape == (1, 512, INPUT // 8, INPUT // 8)
    assert out5.shape == (1, 512, INPUT // 16, INPUT // 16)
    assert_maps_close((out4, out5), (conv4_3, conv5_3), atol=1e-5)

    # With the default L2Norm: x / ||x||_2 over channels, times 10 and 8.
    model = VGG(norm=norm, out_indices=(0, 1)).eval()
    model.load_reference(state)
    with torch.no_grad():
        outs = model(x)
    expected = [feat / feat.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-10) * scale
                for feat, scale in zip((conv4_3, conv5_3), (10.0, 8.0))]
    assert_maps_close(outs, expected, atol=1e-5, rtol=1e-5)


def test_refinedet_strides_and_channels():
    model = VGG().eval()
    assert model.out_strides == (8, 16, 32, 64) and model.out_channels == (512, 512, 1024, 512)
    assert model.size_divisor == 64
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(512, 8, 8), (512, 4, 4), (1024, 2, 2),
                                                  (512, 1, 1)]


def test_pool3_uses_ceil_mode_like_ssd():
    # As SSD300's 75 -> 38: 36 -> 18 -> 9 -> 5 (ceil) at conv4_3; floor gives 4.
    model = VGG(out_indices=(0,)).eval()
    with torch.no_grad():
        (out,) = model(torch.randn(1, 3, 36, 36))
    assert out.shape[-2:] == (5, 5)


def test_parameter_count(vgg16):
    # torchvision's conv layers + fc6 (3x3, 512->1024) + fc7 (1x1, 1024->1024)
    # + conv6_1 (1x1, 1024->256) + conv6_2 (3x3, 256->512) + two L2Norm scales.
    extra = (512 * 9 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 256 + 256) \
        + (256 * 9 * 512 + 512) + 2 * 512
    expected = sum(p.numel() for p in vgg16.features.parameters()) + extra
    assert sum(p.numel() for p in VGG().parameters()) == expected == 21_927_488


def test_fc6_fc7_are_the_reduced_torchvision_classifier(vgg16):
    """SSD's reduced fc6 is the original fc6 restricted to every 4th unit and
    to the taps (0, 3, 6) of its 7x7 window: on a 7x7 pool5 map that is zero
    outside those taps, the dilated conv at the centre equals the original
    fully-connected layer."""
    model = VGG(out_indices=(2,)).eval()
    model.load_reference(vgg16.state_dict())
    pool5 = torch.zeros(1, 512, 7, 7)
    taps = torch.randn(1, 512, 3, 3, generator=torch.Generator().manual_seed(2))
    pool5[:, :, ::3, ::3] = taps
    with torch.no_grad():
        fc6_linear = vgg16.classifier[0](pool5.flatten(1))[:, ::4]
        fc6_conv = model.stage3.fc6(pool5)[:, :, 3, 3]
        torch.testing.assert_close(fc6_conv, fc6_linear, atol=1e-5, rtol=1e-5)
        hidden = torch.randn(1, 4096, generator=torch.Generator().manual_seed(3))
        hidden[:, 1::4] = hidden[:, 2::4] = hidden[:, 3::4] = 0  # only the kept units
        fc7_linear = vgg16.classifier[3](hidden)[:, ::4]
        fc7_conv = model.stage3.fc7(hidden[:, ::4, None, None])[:, :, 0, 0]
        torch.testing.assert_close(fc7_conv, fc7_linear, atol=1e-5, rtol=1e-5)


def test_layers_without_reference_keep_their_values(vgg16):
    model = VGG()
    conv6_2 = model.stage4.conv6_2.weight.clone()
    model.load_reference(vgg16.state_dict())  # strict: every key is filled
    assert torch.equal(model.stage4.conv6_2.weight, conv6_2)
    assert torch.equal(model.output_norms[0].weight, torch.full((512,), 10.0))
    assert torch.equal(model.output_norms[1].weight, torch.full((512,), 8.0))


def test_l2norm_matches_hand_computation():
    norm = L2Norm(3, scale=20.0)
    x = torch.tensor([3.0, 4.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(norm(x).flatten(), torch.tensor([12.0, 16.0, 0.0]))
    assert torch.allclose(F.normalize(x, dim=1).flatten(), torch.tensor([0.6, 0.8, 0.0]))


def test_frozen_stages_and_norm_eval():
    model = VGG(norm="BN", frozen_stages=1, out_indices=(0, 1)).train()
    for stage in (model.stem, model.stage1):
        assert all(not p.requires_grad for p in stage.parameters())
        assert all(not m.training for m in stage.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(p.requires_grad for p in model.stage2.parameters())
    assert all(m.training for m in model.stage2.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(p.requires_grad for p in model.output_norms.parameters())  # not a stage

    model = VGG(norm="BN", norm_eval=True, out_indices=(0,)).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 10 and all(not m.training for m in bns)


def test_built_through_registry():
    model = BACKBONES.build(dict(type="VGG", depth=16, out_indices=(0, 1)))
    assert isinstance(model, VGG) and model.out_strides == (8, 16)
    assert not hasattr(model, "stage3")


def test_load_reference_from_file(tmp_path, vgg16):
    path = tmp_path / "vgg16.pth"
    torch.save({k: v for k, v in vgg16.state_dict().items() if k.startswith("features.")}, path)
    model = VGG(out_indices=(0, 1))
    model.load_reference(path)
    assert torch.equal(model.stem.conv1_1.weight, vgg16.features[0].weight)
    assert torch.equal(model.stage1.conv4_3.bias, vgg16.features[21].bias)
    assert torch.equal(model.stage2.conv5_3.weight, vgg16.features[28].weight)


@pytest.mark.parametrize("kwargs,name", [
    (dict(depth=19), "depth"),
    (dict(norm="GN"), "norm"),
    (dict(out_indices=(4,)), "out_indices"),
    (dict(l2_norm_scales=(10.0,)), "l2_norm_scales"),
    (dict(frozen_stages=7), "frozen_stages"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VGG(**kwargs)
