"""Guided Anchoring's feature adaption: a deformable conv driven by the shape."""
import pytest
import torch
import torch.nn.functional as F

from toolbox.models.layers.feature_adaption import FeatureAdaption

pytestmark = pytest.mark.usefixtures("one_thread")


def test_zero_offsets_equal_a_regular_conv_with_the_same_weights():
    torch.manual_seed(0)
    layer = FeatureAdaption(8, 12, deform_groups=4)
    x, shape = torch.randn(2, 8, 6, 7), torch.randn(2, 2, 6, 7)
    with torch.no_grad():
        layer.conv_offset.weight.zero_()  # offsets are 0 whatever the shape
        got = layer(x, shape)
    want = F.relu(F.conv2d(x, layer.conv_adaption.weight, padding=1))
    torch.testing.assert_close(got, want)
    assert (want > 0).any() and (want == 0).any()  # the ReLU is there and not trivial


def test_offsets_follow_the_shape_and_do_not_train_it():
    torch.manual_seed(0)
    layer = FeatureAdaption(4, 4, deform_groups=2)
    x = torch.randn(1, 4, 5, 6)
    with torch.no_grad():  # offset channels are (dy, dx) pairs: dx = shape channel 0
        layer.conv_offset.weight.zero_()
        layer.conv_offset.weight[1::2, 0] = 1.0
    shape = torch.zeros(1, 2, 5, 6)
    shape[:, 0] = 1.0  # every kernel tap samples one column to the right
    shape.requires_grad_(True)
    got = layer(x, shape)
    # out[j] = sum_k w[k] x[j + k + 1] (k = -1, 0, 1; zeros outside the map)
    want = F.conv2d(F.pad(x, (0, 2)), layer.conv_adaption.weight, padding=(1, 0))
    torch.testing.assert_close(got, F.relu(want))
    got.sum().backward()
    assert shape.grad is None and layer.conv_offset.weight.grad is not None
    with pytest.raises(ValueError, match="deform_groups"):
        FeatureAdaption(6, 6, deform_groups=4)


def test_optional_norm_between_deformable_conv_and_relu():
    torch.manual_seed(0)
    layer = FeatureAdaption(8, 8, deform_groups=4, norm_cfg=dict(type="GN", num_groups=4))
    assert isinstance(layer.norm, torch.nn.GroupNorm)
    x, shape = torch.randn(2, 8, 6, 7), torch.randn(2, 2, 6, 7)
    out = layer(x, shape)
    want = F.relu(layer.norm(layer.conv_adaption(x, layer.conv_offset(shape))))
    torch.testing.assert_close(out, want)
    assert 0.3 < (out > 0).float().mean() < 0.7  # normalised: about half active
