"""ASFF: shapes, fusion weights, a functional re-derivation, gradients."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolbox.models.necks.asff import ASFF
from toolbox.models.necks.fpn import FPN
from toolbox.registry import NECKS

STRIDES = (8, 16, 32, 64)


def _inputs(channels, strides, size=(64, 48), batch=2, seed=0):
    torch.manual_seed(seed)
    return [torch.randn(batch, c, -(-size[0] // s), -(-size[1] // s))
            for c, s in zip(channels, strides)]


@pytest.mark.parametrize("channels", [(8, 8), (4, 8, 16), (8, 8, 8, 8), (4, 6, 8, 10)])
@pytest.mark.parametrize("out_channels", ["int", "per_level"])
def test_shapes_and_weights(channels, out_channels):
    n = len(channels)
    strides = STRIDES[:n]
    outc = 12 if out_channels == "int" else tuple(range(5, 5 + n))
    neck = ASFF(channels, strides, outc, compress_channels=4, return_weights=True).eval()
    inputs = _inputs(channels, strides, size=(40, 32))
    outs, weights = neck(inputs)
    expected_c = (outc,) * n if isinstance(outc, int) else outc
    assert neck.out_channels == expected_c
    assert neck.out_strides == strides
    assert len(outs) == len(weights) == n
    for x, out, w, c in zip(inputs, outs, weights, expected_c):
        assert out.shape == (2, c, *x.shape[-2:])
        assert w.shape == (2, n, *x.shape[-2:])
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(dim=1), torch.ones_like(w[:, 0]))
    # Without return_weights only the maps come back.
    neck.return_weights = False
    plain = neck(inputs)
    assert isinstance(plain, tuple) and len(plain) == n
    torch.testing.assert_close(plain[0], outs[0])


def test_downsampling_generalises_with_max_pools():
    """Stride ratio 2**k: k-1 max-pools then one stride-2 conv; up: one 1x1 conv."""
    neck = ASFF((4, 4, 4, 4), STRIDES, 4)
    for target in range(4):
        for source in range(4):
            layers = list(neck.resizers[target][source].layers)
            pools = [m for m in layers if isinstance(m, nn.MaxPool2d)]
            convs = [m.conv for m in layers if hasattr(m, "conv")]
            if source == target:
                assert layers == []
            elif source > target:
                assert not pools and [c.kernel_size for c in convs] == [(1, 1)]
            else:
                assert len(pools) == target - source - 1
                assert [(c.kernel_size, c.stride) for c in convs] == [((3, 3), (2, 2))]


def test_uniform_weights_give_mean_of_resized_inputs():
    """Zeroed logits conv: weights 1/N, fusion = mean of the resized inputs."""
    channels, strides = (4, 6, 8), (8, 16, 32)
    neck = ASFF(channels, strides, 5, return_weights=True).eval()
    with torch.no_grad():
        for logits in neck.weight_logits:
            logits.weight.zero_()
            logits.bias.zero_()
    inputs = _inputs(channels, strides)
    outs, weights = neck(inputs)
    for target, x in enumerate(inputs):
        torch.testing.assert_close(weights[target], torch.full_like(weights[target], 1 / 3))
        size = x.shape[-2:]
        resized = [neck.resizers[target][s](inputs[s], size) for s in range(3)]
        mean = torch.stack(resized).mean(dim=0)
        torch.testing.assert_close(outs[target], neck.fuse_convs[target](mean))


def test_known_weights_give_weighted_sum():
    """Logits bias log(1), log(2), log(3), zero weight: softmax = 1/6, 2/6, 3/6."""
    channels, strides = (4, 4, 4), (8, 16, 32)
    neck = ASFF(channels, strides, 4, return_weights=True).eval()
    with torch.no_grad():
        for logits in neck.weight_logits:
            logits.weight.zero_()
            logits.bias.copy_(torch.log(torch.tensor([1.0, 2.0, 3.0])))
    captured = {}
    neck.fuse_convs[1].register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    inputs = _inputs(channels, strides)
    _, weights = neck(inputs)
    size = inputs[1].shape[-2:]
    resized = [neck.resizers[1][s](inputs[s], size) for s in range(3)]
    expected = (1 * resized[0] + 2 * resized[1] + 3 * resized[2]) / 6
    torch.testing.assert_close(captured["x"], expected)
    torch.testing.assert_close(weights[1][0, :, 0, 0], torch.tensor([1 / 6, 2 / 6, 3 / 6]))


def test_matches_functional_reference_with_odd_sizes():
    """Re-derive every level with torch.nn.functional from the paper's recipe.

    Plain convs (no norm/act) so the reference needs only the conv weights;
    nearest upsampling is written as index gathering, not F.interpolate.
    """
    channels, strides = (3, 5, 7), (8, 16, 32)
    neck = ASFF(channels, strides, (2, 3, 4), compress_channels=2,
                norm_cfg=None, act_cfg=None, return_weights=True).eval()
    size = (67, 45)  # odd: maps are 9x6, 5x3, 3x2
    inputs = _inputs(channels, strides, size=size, batch=1)
    outs, weights = neck(inputs)

    def conv(module, x, stride=1):
        c = module.conv
        return F.conv2d(x, c.weight, c.bias, stride=stride, padding=c.kernel_size[0] // 2)

    def nearest(x, h, w):
        rows = (torch.arange(h) * x.shape[-2]) // h
        cols = (torch.arange(w) * x.shape[-1]) // w
        return x[..., rows, :][..., cols]

    for target, x_t in enumerate(inputs):
        h, w = x_t.shape[-2:]
        resized = []
        for source, x_s in enumerate(inputs):
            module = neck.resizers[target][source].layers
            if source == target:
                r = x_s
            elif source > target:
                r = nearest(conv(module[0], x_s), h, w)
            else:
                r = x_s
                for _ in range(target - source - 1):
                    r = F.max_pool2d(r, 3, stride=2, padding=1)
                r = conv(module[-1], r, stride=2)
            assert r.shape[-2:] == (h, w)
            resized.append(r)
        compressed = [conv(neck.compress_convs[target][s], r) for s, r in enumerate(resized)]
        lw = neck.weight_logits[target]
        logits = F.conv2d(torch.cat(compressed, 1), lw.weight, lw.bias)
        wts = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
        fused = sum(wts[:, s:s + 1] * r for s, r in enumerate(resized))
        expected = conv(neck.fuse_convs[target], fused)
        torch.testing.assert_close(weights[target], wts, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(outs[target], expected, rtol=1e-5, atol=1e-5)


def test_floor_sized_pyramid_is_snapped():
    channels, strides = (4, 4, 4), (8, 16, 32)
    neck = ASFF(channels, strides, 4)
    inputs = [torch.randn(2, 4, 67 // s, 45 // s) for s in strides]  # 8x5, 4x2, 2x1
    for out, x in zip(neck(inputs), inputs):
        assert out.shape[-2:] == x.shape[-2:]


def test_gradients_reach_every_level_and_parameter():
    channels, strides = (4, 6, 8, 10), STRIDES
    neck = ASFF(channels, strides, 6, compress_channels=4).train()
    inputs = [x.requires_grad_() for x in _inputs(channels, strides, size=(48, 48))]
    outs = neck(inputs)
    # Each single output must reach every input through the fusion.
    for target, out in enumerate(outs):
        grads = torch.autograd.grad(out.pow(2).sum(), inputs, retain_graph=True)
        for i, g in enumerate(grads):
            assert g.abs().sum() > 0, (target, i)
    sum(o.pow(2).sum() for o in outs).backward()
    for name, p in neck.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_after_fpn_and_registry_build():
    fpn = NECKS.build(dict(type="FPN", in_channels=(4, 8, 16), out_channels=8,
                           in_strides=(8, 16, 32)))
    asff = NECKS.build(dict(type="ASFF", in_channels=fpn.out_channels,
                            in_strides=fpn.out_strides, out_channels=8))
    assert isinstance(asff, ASFF) and isinstance(fpn, FPN)
    asff.init_weights()
    outs = asff(fpn(_inputs((4, 8, 16), (8, 16, 32))))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 8, 6), (2, 8, 4, 3), (2, 8, 2, 2)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=(8,), in_strides=(8,)), "at least 2 levels"),
    (dict(in_strides=(8, 16)), "in_strides"),
    (dict(in_strides=(8, 24, 48)), "powers of two"),
    (dict(in_strides=(32, 16, 8)), "powers of two"),
    (dict(out_channels=(8, 8)), "out_channels"),
    (dict(out_channels=0), "out_channels"),
    (dict(compress_channels=0), "compress_channels"),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=(8, 8, 8), in_strides=(8, 16, 32), out_channels=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ASFF(**args)


def test_bad_inputs():
    neck = ASFF((4, 8), (8, 16), 4)
    with pytest.raises(ValueError, match="expected 2 input maps"):
        neck([torch.randn(1, 4, 8, 8)])
    with pytest.raises(ValueError, match="input 1"):
        neck([torch.randn(1, 4, 8, 8), torch.randn(1, 5, 4, 4)])
