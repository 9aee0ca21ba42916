"""UNETR's ViT encoder: declared outputs, shapes (2D/3D), patch projections,
position-embedding sizes, freezing, argument errors. (The mapping of MONAI's
weights is checked in tests/models/segmentors/test_unetr_equivalence.py.)"""
import inspect

import pytest
import torch

from toolbox.models.backbones.vit import ViT
from toolbox.registry import BACKBONES

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(hidden_size=32, num_layers=4, num_heads=4, mlp_dim=64, out_indices=(0, 1, 2, 3))


@pytest.mark.parametrize("dims", [2, 3])
def test_returns_input_and_maps_at_stride_16(dims):
    vit = BACKBONES.build(dict(type="ViT", in_channels=2, img_size=32, spatial_dims=dims, **TINY))
    assert vit.out_channels == (2, 32, 32, 32, 32)
    assert vit.out_strides == (1, 16, 16, 16, 16) and vit.size_divisor == 16
    x = torch.randn(2, 2, *(32,) * dims)
    outs = vit(x)
    assert len(outs) == 5 and outs[0] is x
    assert all(o.shape == (2, 32) + (2,) * dims for o in outs[1:])


def test_paper_defaults_and_out_indices_without_input():
    defaults = {k: v.default for k, v in inspect.signature(ViT).parameters.items()}
    assert (defaults["hidden_size"], defaults["num_layers"], defaults["num_heads"],
            defaults["mlp_dim"], defaults["patch_size"]) == (768, 12, 12, 3072, 16)
    assert defaults["out_indices"] == (3, 6, 9, 11)  # MONAI's hidden_states_out[3, 6, 9] + last
    vit = BACKBONES.build(dict(type="ViT", img_size=32, with_input=False, **TINY))
    assert vit.out_channels == (32,) * 4 and vit.out_strides == (16,) * 4


def test_last_output_is_layer_normed_and_others_are_not():
    torch.manual_seed(0)
    vit = BACKBONES.build(dict(type="ViT", img_size=32, spatial_dims=2, with_input=False,
                               **TINY)).eval()
    x = torch.randn(1, 1, 32, 32)
    outs = vit(x)
    tokens = vit.patch_embed(x, vit.patch_embed.pos_embed)
    states = []
    for block in vit.blocks:
        tokens = block(tokens)
        states.append(tokens)
    as_map = lambda t: t.transpose(1, 2).reshape(1, 32, 2, 2)  # noqa: E731
    torch.testing.assert_close(outs[0], as_map(states[0]))
    torch.testing.assert_close(outs[3], as_map(torch.nn.functional.layer_norm(
        states[3], (32,), vit.norm.weight, vit.norm.bias)))


@pytest.mark.parametrize("dims", [2, 3])
def test_perceptron_projection_equals_conv_with_reordered_weights(dims):
    """A linear layer on (patch axes..., channel)-flattened patches is the
    patch conv with its kernel permuted to that order."""
    torch.manual_seed(0)
    common = dict(type="ViT", in_channels=3, img_size=32, spatial_dims=dims, patch_size=16, **TINY)
    conv_vit = BACKBONES.build(dict(common, proj_type="conv")).eval()
    lin_vit = BACKBONES.build(dict(common, proj_type="perceptron")).eval()
    state = conv_vit.state_dict()
    weight = state.pop("patch_embed.proj.weight")  # [hidden, C, *patch]
    state["patch_embed.proj.weight"] = weight.permute(0, *range(2, 2 + dims), 1).reshape(32, -1)
    lin_vit.load_state_dict(state)
    x = torch.randn(2, 3, *(32,) * dims)
    for a, b in zip(conv_vit(x)[1:], lin_vit(x)[1:]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_input_size_must_match_img_size_unless_interpolating():
    vit = BACKBONES.build(dict(type="ViT", img_size=32, spatial_dims=2, **TINY)).eval()
    with pytest.raises(ValueError, match="img_size"):
        vit(torch.randn(1, 1, 48, 32))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        vit(torch.randn(1, 1, 40, 32))
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        vit(torch.randn(1, 2, 32, 32))
    vit.interpolate_pos_embed = True
    outs = vit(torch.randn(1, 1, 48, 32))
    assert outs[-1].shape == (1, 32, 3, 2)
    # Resizing to the learned grid is the identity.
    torch.testing.assert_close(vit._pos_embed_for((2, 2)), vit.patch_embed.pos_embed)


def test_frozen_stages_freeze_patch_embedding_and_first_blocks():
    vit = BACKBONES.build(dict(type="ViT", img_size=32, frozen_stages=2, **TINY))
    vit.train()
    assert not vit.patch_embed.pos_embed.requires_grad
    assert not any(p.requires_grad for b in vit.blocks[:2] for p in b.parameters())
    assert all(p.requires_grad for b in vit.blocks[2:] for p in b.parameters())


@pytest.mark.parametrize("bad, match", [
    (dict(hidden_size=30, num_heads=4), "divisible by num_heads"),
    (dict(img_size=40), "multiple of patch_size"),
    (dict(spatial_dims=1), "spatial_dims"),
    (dict(proj_type="mlp"), "proj_type"),
    (dict(out_indices=(3, 12)), "out_indices"),
    (dict(img_size=(32, 32)), "img_size"),
])
def test_bad_arguments_are_named(bad, match):
    cfg = dict(type="ViT", img_size=32, **TINY)
    cfg.update(bad)
    with pytest.raises(ValueError, match=match):
        BACKBONES.build(cfg)
