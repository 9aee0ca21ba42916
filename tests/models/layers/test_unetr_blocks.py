"""UNETR decoder blocks: same outputs as MONAI's blocks with the same weights
(2D and 3D), shapes, shortcut presence, and errors."""
import pytest
import torch

from toolbox.models.layers.unetr_blocks import (ConvBlock, ProjectionUpBlock, UpBlock,
                                                norm_cfg_for)

pytestmark = pytest.mark.usefixtures("one_thread")
import monai.networks.blocks as monai_blocks  # noqa: E402 - the reference


def _from_monai(monai_module, ours, renames):
    """Copy MONAI's weights into ``ours`` (key renames: (theirs, ours) substrings)."""
    state = {}
    for key, value in monai_module.state_dict().items():
        for theirs, mine in renames:
            key = key.replace(theirs, mine)
        state[key] = value
    ours.load_state_dict(state, strict=True)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("channels", [(4, 6), (6, 6)])
def test_conv_block_matches_monai_res_block(dims, channels):
    torch.manual_seed(0)
    cin, cout = channels
    ref = monai_blocks.UnetResBlock(dims, cin, cout, kernel_size=3, stride=1,
                                    norm_name="instance").eval()
    ours = ConvBlock(cin, cout, spatial_dims=dims).eval()
    assert (ours.shortcut is not None) == (cin != cout)
    _from_monai(ref, ours, [("conv3.", "shortcut.")])
    x = torch.randn(2, cin, *(6,) * dims)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_plain_conv_block_matches_monai_basic_block(dims):
    torch.manual_seed(0)
    ref = monai_blocks.UnetBasicBlock(dims, 3, 5, kernel_size=3, stride=1,
                                      norm_name="instance").eval()
    ours = ConvBlock(3, 5, spatial_dims=dims, residual=False).eval()
    assert ours.shortcut is None
    _from_monai(ref, ours, [])
    x = torch.randn(1, 3, *(5,) * dims)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_projection_up_block_matches_monai(dims):
    torch.manual_seed(0)
    ref = monai_blocks.UnetrPrUpBlock(dims, 12, 4, num_layer=2, kernel_size=3, stride=1,
                                      upsample_kernel_size=2, norm_name="instance",
                                      conv_block=True, res_block=True).eval()
    ours = ProjectionUpBlock(12, 4, num_layers=2, spatial_dims=dims).eval()
    _from_monai(ref, ours, [("transp_conv_init.conv.", "deconv_init."), ("blocks.", "steps."),
                            (".0.conv.weight", ".0.weight")])
    x = torch.randn(1, 12, *(2,) * dims)
    out = ours(x)
    assert out.shape == (1, 4) + (16,) * dims  # 2 ** (1 + num_layers) = 8x
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_up_block_matches_monai(dims):
    torch.manual_seed(0)
    ref = monai_blocks.UnetrUpBlock(dims, 8, 4, kernel_size=3, upsample_kernel_size=2,
                                    norm_name="instance", res_block=True).eval()
    ours = UpBlock(8, 4, spatial_dims=dims).eval()
    _from_monai(ref, ours, [("transp_conv.conv.", "deconv."), ("conv3.", "shortcut.")])
    x, skip = torch.randn(2, 8, *(3,) * dims), torch.randn(2, 4, *(6,) * dims)
    torch.testing.assert_close(ours(x, skip), ref(x, skip), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="skip"):
        ours(x, torch.randn(2, 4, *(5,) * dims))


def test_norm_cfg_gets_its_dimension_and_bad_dims_are_refused():
    assert norm_cfg_for(dict(type="IN"), 3) == dict(type="IN3d")
    assert norm_cfg_for(dict(type="BN", momentum=0.1), 2) == dict(type="BN2d", momentum=0.1)
    assert norm_cfg_for(dict(type="GN", num_groups=2), 3) == dict(type="GN", num_groups=2)
    with pytest.raises(ValueError, match="spatial_dims"):
        ConvBlock(2, 2, spatial_dims=4)
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionUpBlock(4, 4, num_layers=-1)
