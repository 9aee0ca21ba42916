"""Swin Transformer backbone: equivalence with torchvision, declared outputs, behaviour."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.models import swin_b, swin_t
from torchvision.models.swin_transformer import SwinTransformer as TorchvisionSwin

from toolbox.errors import ConfigArgumentError
from toolbox.models.backbones.swin import SwinTransformer
from toolbox.registry import BACKBONES

TOL = 1e-5
# A small config shared by the behaviour tests (window 4 so that shifts,
# padding and single-window maps all occur at small inputs).
TINY = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4)


def perturbed(model):
    """Move the constant-initialised parameters (1-D: LayerNorm weights and
    biases, linear biases) off their init, so a wrong key mapping cannot go
    unnoticed."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def tiny_torchvision():
    torch.manual_seed(0)
    return perturbed(TorchvisionSwin(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
        window_size=[4, 4], stochastic_depth_prob=0.0, num_classes=10))


def torchvision_stages(model, images):
    """Raw outputs of torchvision's four stages (NHWC) and its final norm."""
    feats, x = [], images
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i % 2 == 1:
            feats.append(x)
    return feats, model.norm(x)


def check_against_torchvision(ours, reference, images):
    """Raw stage outputs (hooked before the per-stage norms) and the returned
    maps must match torchvision's stages / final norm."""
    with torch.no_grad():
        for norm in list(ours.out_norms.values())[:-1]:  # no torchvision counterpart
            norm.weight.normal_(1.0, 0.2)
            norm.bias.normal_(0.0, 0.2)
    raw = []
    hooks = [layer.register_forward_hook(lambda m, i, o: raw.append(o)) for layer in ours.layers]
    with torch.no_grad():
        outs = ours(images)
        ref_raw, ref_final = torchvision_stages(reference, images)
    for h in hooks:
        h.remove()
    assert len(outs) == 4
    for i in range(4):
        assert raw[i].shape == ref_raw[i].shape
        assert (raw[i] - ref_raw[i]).abs().max() < TOL, f"raw stage {i + 1}"
        norm = ours.out_norms[str(i)]
        expected = ref_final if i == 3 else F.layer_norm(
            ref_raw[i], (ref_raw[i].shape[-1],), norm.weight, norm.bias)
        assert (outs[i] - expected.permute(0, 3, 1, 2)).abs().max() < TOL, f"output {i + 1}"
    return outs


@pytest.fixture(scope="module")
def swin_t_pair():
    torch.manual_seed(0)
    reference = perturbed(swin_t(weights=None))
    ours = SwinTransformer(arch="tiny").eval()
    assert not ours.load_reference(reference.state_dict()).missing_keys
    return ours, reference


@pytest.mark.parametrize("hw", [(224, 224), (160, 192)], ids=["224x224", "160x192"])
def test_swin_t_matches_torchvision(swin_t_pair, hw):
    # 224: last stage 7x7 = one window, no shift; 160x192: stages 3/4 are
    # 10x12 (padded to 14x14, shifted) and 5x6 (smaller than a window).
    ours, reference = swin_t_pair
    torch.manual_seed(2)
    outs = check_against_torchvision(ours, reference, torch.randn(1, 3, *hw))
    assert [o.shape[1] for o in outs] == list(ours.out_channels) == [96, 192, 384, 768]
    assert [(hw[0] // s, hw[1] // s) for s in ours.out_strides] == [o.shape[2:] for o in outs]


def test_swin_b_matches_torchvision_small_input():
    # Different widths/heads from swin_t and the 18-block stage 3 of swin_s/b
    # (swin_s is covered by its parameter count). 64x64: stage maps 16/8/4/2,
    # i.e. shifted, shifted, one window, one window.
    torch.manual_seed(0)
    reference = swin_b(weights=None).eval()
    ours = SwinTransformer(arch="base").eval()
    ours.load_reference(reference.state_dict())
    check_against_torchvision(ours, reference, torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("hw", [(36, 44), (28, 100), (64, 20)])
def test_tiny_config_matches_torchvision_at_odd_sizes(hw):
    # (36, 44): odd maps 9x11 -> patch merging pads; (28, 100): 7x25 ... 1x4,
    # a shift along W only; (64, 20): the other way round. Batch 2 checks
    # that the shifted-window mask is shared across the batch.
    reference = tiny_torchvision()
    ours = SwinTransformer(**TINY, drop_path_rate=0.0).eval()
    ours.load_reference(reference.state_dict())
    torch.manual_seed(3)
    check_against_torchvision(ours, reference, torch.randn(2, 3, *hw))


def test_stem_pads_inputs_that_are_not_patch_multiples():
    # torchvision drops the last partial patch; this backbone zero-pads, i.e.
    # it equals torchvision applied to the zero-padded image.
    reference = tiny_torchvision()
    ours = SwinTransformer(**TINY).eval()
    ours.load_reference(reference.state_dict())
    images = torch.randn(1, 3, 30, 45)
    with torch.no_grad():
        outs = ours(images)
        _, final = torchvision_stages(reference, F.pad(images, (0, 3, 0, 2)))
    assert outs[0].shape[2:] == (8, 12)  # ceil(30 / 4), ceil(45 / 4)
    assert (outs[3] - final.permute(0, 3, 1, 2)).abs().max() < TOL


def test_relative_position_index_matches_torchvision():
    # The index is derived (not stored); it must equal torchvision's buffer.
    reference = tiny_torchvision()
    ours = SwinTransformer(**TINY)
    expected = reference.features[1][0].attn.relative_position_index
    assert torch.equal(ours.layers[0].blocks[0].attn.relative_position_index.flatten(), expected)


def test_drop_path_schedule_matches_torchvision():
    reference = TorchvisionSwin([4, 4], 16, [2, 2, 2, 2], [1, 2, 2, 4], [4, 4],
                                stochastic_depth_prob=0.3)
    ours = SwinTransformer(**TINY, drop_path_rate=0.3)
    expected = [block.stochastic_depth.p for i in (1, 3, 5, 7) for block in reference.features[i]]
    got = [block.drop_path.p for layer in ours.layers for block in layer.blocks]
    assert got == pytest.approx(expected) and got[0] == 0.0 and got[-1] == pytest.approx(0.3)


def test_parameter_counts():
    # T/S/B: torchvision's published counts (classifier included) = backbone
    # - norms of stages 1-3 (no torchvision counterpart) + 1000-way head.
    # L: the paper's Table 1 gives 197M for Swin-L (224^2, with classifier).
    published = {"tiny": 28_288_354, "small": 49_606_258, "base": 87_768_224, "large": 197e6}
    for arch, expected in published.items():
        with torch.device("meta"):
            model = SwinTransformer(arch=arch)
        count = sum(p.numel() for p in model.parameters())
        extra_norms = sum(2 * c for c in model.out_channels[:3])
        head = model.out_channels[-1] * 1000 + 1000
        with_head = count - extra_norms + head
        if arch == "large":
            assert round(with_head / 1e6) == 197
        else:
            assert with_head == expected, arch


def test_registry_build_and_declared_outputs():
    model = BACKBONES.build(dict(type="SwinTransformer", arch="tiny", **TINY))
    assert isinstance(model, SwinTransformer)
    assert model.out_channels == (16, 32, 64, 128)
    assert model.out_strides == (4, 8, 16, 32)
    assert model.size_divisor == 32
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, c, 64 // s, 96 // s) for c, s in
                                              zip(model.out_channels, model.out_strides)]
    with pytest.raises(ConfigArgumentError, match="window_sise"):
        BACKBONES.build(dict(type="SwinTransformer", window_sise=7))


@pytest.mark.parametrize("hw", [(1, 1), (33, 47), (97, 31)])
def test_any_input_size(hw):
    model = SwinTransformer(**TINY).eval()
    outs = model(torch.randn(1, 3, *hw))
    h, w = hw
    for o, s in zip(outs, model.out_strides):
        assert o.shape[2:] == (-(-h // s), -(-w // s))
        assert torch.isfinite(o).all()


def test_out_indices_and_reference_loading():
    reference = tiny_torchvision()
    images = torch.randn(1, 3, 64, 64)
    full = SwinTransformer(**TINY).eval()
    full.load_reference(reference.state_dict())
    subset = SwinTransformer(**TINY, out_indices=(1, 3)).eval()
    subset.load_reference(reference.state_dict())  # strict: all keys map
    assert subset.out_channels == (32, 128) and subset.out_strides == (8, 32)
    with torch.no_grad():
        a, b = full(images), subset(images)
    assert len(b) == 2
    assert torch.equal(a[1], b[0])  # stage-2 norm left at LayerNorm defaults in both
    assert torch.equal(a[3], b[1])  # the final norm maps to stage 4 either way
    early = SwinTransformer(**TINY, out_indices=(0, 1)).eval()
    early.load_reference(reference.state_dict())  # torchvision's final norm is dropped
    with torch.no_grad():
        assert torch.equal(early(images)[1], b[0])


def test_load_reference_from_file(tmp_path):
    reference = tiny_torchvision()
    path = tmp_path / "swin_tiny_tv.pth"
    torch.save(reference.state_dict(), path)
    ours = SwinTransformer(**TINY).eval()
    result = ours.load_reference(str(path))
    assert not result.missing_keys and not result.unexpected_keys
    check_against_torchvision(ours, reference, torch.randn(1, 3, 48, 48))


def test_frozen_stages():
    model = SwinTransformer(**TINY, frozen_stages=2)
    model.train()
    frozen = [model.patch_embed, model.layers[0], model.layers[1],
              model.out_norms["0"], model.out_norms["1"]]
    trainable = [model.layers[2], model.layers[3], model.out_norms["2"], model.out_norms["3"]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in trainable for p in m.parameters())
    assert all(not m.training for m in frozen) and all(m.training for m in trainable)
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert all(p.grad is not None for p in model.layers[3].parameters())


@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="huge"), "arch"),
    (dict(out_indices=(0, 4)), "out_indices"),
    (dict(depths=(2, 2), num_heads=(1, 2, 4)), "num_heads"),
    (dict(embed_dims=10, num_heads=(3, 6, 12, 24)), "num_heads"),
    (dict(window_size=0), "window_size"),
    (dict(frozen_stages=5), "frozen_stages"),
    (dict(drop_path_rate=1.5), "drop_path_rate"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SwinTransformer(**kwargs)


def test_bad_input_shape():
    model = SwinTransformer(**TINY)
    with pytest.raises(ValueError, match="images"):
        model(torch.randn(1, 1, 32, 32))
