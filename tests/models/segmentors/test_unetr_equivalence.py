"""UNETR in the paper's configuration (img 96^3, ViT-B/16, feature_size 16,
14 classes, 1 channel) equals MONAI's ``monai.networks.nets.UNETR`` loaded
with the same weights through the explicit key mapping; parameter counts
agree. Also MONAI's 2D perceptron ViT through the backbone's mapping."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from toolbox.registry import BACKBONES, MODELS

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[3]
MONAI_UNETR_PARAMS = 92_802_478  # monai.networks.nets.UNETR(1, 14, 96), MONAI 1.4-1.6


def test_paper_unetr_equals_monai_with_the_same_weights(monai_nets):
    torch.manual_seed(0)
    ref = monai_nets.UNETR(in_channels=1, out_channels=14, img_size=96, feature_size=16,
                           hidden_size=768, mlp_dim=3072, num_heads=12, proj_type="conv",
                           norm_name="instance", res_block=True).eval()
    cfg = Config.fromfile(str(ROOT / "configs/unetr/unetr_btcv_96.py"))
    model = MODELS.build(cfg.model).eval()

    ref_total = sum(p.numel() for p in ref.parameters())
    # MONAI's TransformerBlock always builds a cross-attention LayerNorm that its
    # forward never uses without cross-attention; the toolbox has no such layer.
    unused = {n: p for n, p in ref.named_parameters() if "norm_cross_attn" in n}
    assert ref_total == MONAI_UNETR_PARAMS
    assert sum(p.numel() for p in model.parameters()) == ref_total - sum(
        p.numel() for p in unused.values()) == 92_784_046

    result = model.load_reference(ref.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        for p in unused.values():
            p.fill_(float("nan"))  # proves they are unused: the output stays finite
        x = torch.randn(1, 1, 96, 96, 96)
        expected = ref(x)
        got = model(x, mode="tensor")
    assert got.shape == expected.shape == (1, 14, 96, 96, 96)
    assert torch.isfinite(expected).all()
    assert (got - expected).abs().max().item() < 1e-5


def test_monai_2d_perceptron_vit_maps_onto_the_backbone(monai_nets):
    torch.manual_seed(0)
    ref = monai_nets.ViT(in_channels=2, img_size=32, patch_size=16, hidden_size=48, mlp_dim=96,
                         num_layers=3, num_heads=4, proj_type="perceptron",
                         spatial_dims=2).eval()
    vit = BACKBONES.build(dict(type="ViT", in_channels=2, img_size=32, spatial_dims=2,
                               hidden_size=48, mlp_dim=96, num_layers=3, num_heads=4,
                               proj_type="perceptron", out_indices=(0, 1, 2),
                               with_input=False)).eval()
    vit.load_reference(ref.state_dict())
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        last, states = ref(x)
        outs = vit(x)
    to_tokens = lambda m: m.flatten(2).transpose(1, 2)  # noqa: E731
    torch.testing.assert_close(to_tokens(outs[0]), states[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(to_tokens(outs[1]), states[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(to_tokens(outs[2]), last, atol=1e-5, rtol=1e-5)


def test_key_mapping_refuses_foreign_keys():
    vit = BACKBONES.build(dict(type="ViT", img_size=32, hidden_size=24, num_layers=2,
                               num_heads=4, mlp_dim=48, out_indices=(0, 1)))
    with pytest.raises(KeyError, match="not part of a MONAI"):
        vit.convert_reference_state_dict({"features.0.weight": torch.zeros(1)})
