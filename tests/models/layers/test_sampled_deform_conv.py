"""SampledDeformConv2d against torchvision's deformable convolution."""
import pytest
import torch
from torchvision.ops import DeformConv2d, deform_conv2d

from toolbox.models.layers.sampled_deform_conv import SampledDeformConv2d, sampled_deform_conv2d


def _inputs(batch, channels, size, out_size, groups, taps, scale, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, *size, generator=gen, dtype=torch.float64)
    offset = torch.randn(batch, 2 * groups * taps, *out_size, generator=gen,
                         dtype=torch.float64) * scale
    return x.requires_grad_(), offset.requires_grad_()


@pytest.mark.parametrize("case", [
    # (channels, size, kernel, stride, padding, dilation, groups, offset scale)
    (8, (7, 9), 3, 1, 1, 1, 1, 1.5),
    (8, (7, 9), 3, 1, 1, 1, 4, 3.0),       # offsets far outside the map
    (6, (8, 8), 3, 2, 1, 1, 2, 1.0),       # strided
    (4, (9, 6), 3, 1, 2, 2, 1, 1.0),       # dilated
    (4, (5, 5), 1, 1, 0, 1, 1, 0.7),       # 1x1
    (4, (1, 6), 3, 1, 1, 1, 1, 0.5),       # one-row map
])
def test_values_and_gradients_match_torchvision(case):
    channels, size, k, stride, pad, dil, groups, scale = case
    out_h = (size[0] + 2 * pad - dil * (k - 1) - 1) // stride + 1
    out_w = (size[1] + 2 * pad - dil * (k - 1) - 1) // stride + 1
    x, offset = _inputs(2, channels, size, (out_h, out_w), groups, k * k, scale)
    weight = torch.randn(5, channels, k, k, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    ref = deform_conv2d(x, offset, weight, bias, stride=stride, padding=pad, dilation=dil)
    out = sampled_deform_conv2d(x, offset, weight, bias, stride, pad, dil)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    grad = torch.randn_like(ref)
    want = torch.autograd.grad(ref, (x, offset, weight, bias), grad)
    got = torch.autograd.grad(out, (x, offset, weight, bias), grad)
    for name, a, b in zip(("input", "offset", "weight", "bias"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7, msg=f"grad of {name}")


def test_module_is_a_drop_in_for_deform_conv2d():
    torch.manual_seed(0)
    reference = DeformConv2d(8, 6, 3, padding=1, bias=False)
    module = SampledDeformConv2d(8, 6, 3, padding=1, bias=False)
    assert set(module.state_dict()) == set(reference.state_dict())
    module.load_state_dict(reference.state_dict())
    x, offset = torch.randn(2, 8, 6, 6), torch.randn(2, 2 * 2 * 9, 6, 6)  # 2 offset groups
    torch.testing.assert_close(module(x, offset), reference(x, offset), rtol=1e-4, atol=1e-4)
    mask = torch.rand(2, 2 * 9, 6, 6)  # modulated (DCNv2): torchvision's kernel runs
    torch.testing.assert_close(module(x, offset, mask), reference(x, offset, mask))


def test_bad_offsets_and_groups_are_refused():
    x, weight = torch.randn(1, 6, 5, 5), torch.randn(4, 6, 3, 3)
    with pytest.raises(ValueError, match="offset has 10 channels"):
        sampled_deform_conv2d(x, torch.randn(1, 10, 5, 5), weight, padding=1)
    with pytest.raises(ValueError, match=r"must be \[1, 18, 5, 5\]"):
        sampled_deform_conv2d(x, torch.randn(1, 18, 4, 4), weight, padding=1)
    with pytest.raises(ValueError, match="only groups=1"):
        SampledDeformConv2d(6, 4, 3, groups=2)
