"""FPN: declared outputs, torchvision equivalence, hand-worked top-down pass."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from toolbox.models.necks.fpn import FPN
from toolbox.registry import NECKS

RESNET_CHANNELS = (8, 16, 32, 64)  # C2..C5, shrunk
RESNET_STRIDES = (4, 8, 16, 32)


def _inputs(size=64, channels=RESNET_CHANNELS, strides=RESNET_STRIDES, batch=2):
    torch.manual_seed(0)
    # Ceil division, as stride-2 3x3 convs with padding 1 produce.
    return [torch.randn(batch, c, -(-size // s), -(-size // s))
            for c, s in zip(channels, strides)]


def _check_declared(neck, outs, batch=2):
    assert len(outs) == len(neck.out_channels) == len(neck.out_strides)
    for out, c in zip(outs, neck.out_channels):
        assert out.shape[:2] == (batch, c)


@pytest.mark.parametrize("kwargs, strides, sizes", [
    # Faster R-CNN: C2-C5 in, P2-P6 out, P6 by max-pool.
    (dict(num_outs=5), (4, 8, 16, 32, 64), (16, 8, 4, 2, 1)),
    # RetinaNet: C3-C5 in, P3-P7 out, P6 from C5.
    (dict(start_level=1, num_outs=5, add_extra_convs="on_input"),
     (8, 16, 32, 64, 128), (8, 4, 2, 1, 1)),
    (dict(start_level=1, num_outs=5, add_extra_convs="on_output",
          relu_before_extra_convs=True), (8, 16, 32, 64, 128), (8, 4, 2, 1, 1)),
    (dict(num_outs=6, add_extra_convs="on_lateral", upsample_mode="bilinear",
          norm_cfg=dict(type="BN"), act_cfg=dict(type="ReLU")),
     (4, 8, 16, 32, 64, 128), (16, 8, 4, 2, 1, 1)),
    # Middle levels only: no extra level allowed, C3-C4 out.
    (dict(start_level=1, end_level=2), (8, 16), (8, 4)),
])
def test_shapes_and_strides(kwargs, strides, sizes):
    neck = FPN(RESNET_CHANNELS, 16, RESNET_STRIDES, **kwargs)
    outs = neck(_inputs())
    _check_declared(neck, outs)
    assert neck.out_strides == strides
    assert neck.out_channels == (16,) * len(strides)
    assert tuple(o.shape[-1] for o in outs) == sizes
    # Declared strides agree with the maps (64 px input).
    assert all(o.shape[-1] == -(-64 // s) for o, s in zip(outs, strides))


def test_odd_sizes():
    neck = FPN(RESNET_CHANNELS, 8, RESNET_STRIDES, num_outs=6, add_extra_convs="on_input")
    size = (67, 45)
    inputs = [torch.randn(1, c, -(-size[0] // s), -(-size[1] // s))
              for c, s in zip(RESNET_CHANNELS, RESNET_STRIDES)]
    outs = neck(inputs)
    for out, x in zip(outs, inputs):
        assert out.shape[-2:] == x.shape[-2:]
    # Extra levels halve with ceil: 3x2 -> 2x1 -> 1x1.
    assert [tuple(o.shape[-2:]) for o in outs[4:]] == [(2, 1), (1, 1)]
    # Floor-sized pyramids (VGG-style pooling) work too for the top-down pass.
    floor_inputs = [torch.randn(1, c, 67 // s, 45 // s)
                    for c, s in zip(RESNET_CHANNELS, RESNET_STRIDES)]
    for out, x in zip(FPN(RESNET_CHANNELS, 8, RESNET_STRIDES)(floor_inputs), floor_inputs):
        assert out.shape[-2:] == x.shape[-2:]


def _load_from_torchvision(neck, ref):
    """Copy torchvision FPN weights into our module (key mapping)."""
    mapped = {}
    for i in range(len(neck.lateral_convs)):
        for p in ("weight", "bias"):
            mapped[f"lateral_convs.{i}.conv.{p}"] = ref.inner_blocks[i][0].state_dict()[p]
            mapped[f"fpn_convs.{i}.conv.{p}"] = ref.layer_blocks[i][0].state_dict()[p]
    if isinstance(ref.extra_blocks, LastLevelP6P7):
        for i, name in enumerate(("p6", "p7")):
            for p in ("weight", "bias"):
                mapped[f"extra_convs.{i}.conv.{p}"] = getattr(ref.extra_blocks, name).state_dict()[p]
    neck.load_state_dict(mapped, strict=True)


@pytest.mark.parametrize("size", [64, 75])
def test_matches_torchvision_maxpool(size):
    torch.manual_seed(1)
    ref = FeaturePyramidNetwork(list(RESNET_CHANNELS), 16, extra_blocks=LastLevelMaxPool()).eval()
    neck = FPN(RESNET_CHANNELS, 16, RESNET_STRIDES, num_outs=5).eval()
    _load_from_torchvision(neck, ref)
    inputs = _inputs(size)
    expected = list(ref({str(i): x for i, x in enumerate(inputs)}).values())
    outs = neck(inputs)
    assert len(outs) == len(expected) == 5
    for a, b in zip(outs, expected):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_matches_torchvision_retinanet():
    """RetinaNet: C3-C5 in, P6 by conv on C5, ReLU before P7."""
    torch.manual_seed(2)
    c345 = RESNET_CHANNELS[1:]
    ref = FeaturePyramidNetwork(list(c345), 16, extra_blocks=LastLevelP6P7(c345[-1], 16)).eval()
    neck = FPN(RESNET_CHANNELS, 16, RESNET_STRIDES, start_level=1, num_outs=5,
               add_extra_convs="on_input", relu_before_extra_convs=True).eval()
    _load_from_torchvision(neck, ref)
    inputs = _inputs(72)
    expected = list(ref({str(i): x for i, x in enumerate(inputs[1:])}).values())
    outs = neck(inputs)
    assert neck.out_strides == (8, 16, 32, 64, 128)
    for a, b in zip(outs, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _set_conv(module, weight_value, bias_value):
    conv = module.conv
    with torch.no_grad():
        conv.weight.zero_()
        k = conv.kernel_size[0] // 2
        for c in range(min(conv.in_channels, conv.out_channels)):
            conv.weight[c, c, k, k] = weight_value
        conv.bias.fill_(bias_value)


def test_top_down_by_hand_odd_sizes():
    """1-channel FPN with laterals ``2x + 1`` and identity output convs.

    Nearest upsampling from n to m pixels reads source pixel floor(i * n / m).
    """
    neck = FPN((1, 1, 1), 1, (4, 8, 16))
    for lat in neck.lateral_convs:
        _set_conv(lat, 2.0, 1.0)
    for out_conv in neck.fpn_convs:
        _set_conv(out_conv, 1.0, 0.0)
    c3 = torch.arange(5 * 3, dtype=torch.float32).reshape(1, 1, 5, 3)
    c4 = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]]).reshape(1, 1, 3, 2)
    c5 = torch.tensor([[100.0, 200.0], [300.0, 400.0]]).reshape(1, 1, 2, 2)
    p3, p4, p5 = neck((c3, c4, c5))

    lat5 = [[2 * v + 1 for v in row] for row in c5[0, 0].tolist()]
    expected5 = lat5
    # Level 4 (3x2) reads level 5 (2x2) at rows floor(i*2/3) = 0,0,1 and cols 0,1.
    lat4 = [[2 * v + 1 for v in row] for row in c4[0, 0].tolist()]
    rows4 = [0, 0, 1]
    expected4 = [[lat4[i][j] + expected5[rows4[i]][j] for j in range(2)] for i in range(3)]
    # Level 3 (5x3) reads level 4 (3x2) at rows floor(i*3/5) = 0,0,1,1,2,
    # cols floor(j*2/3) = 0,0,1.
    lat3 = [[2 * v + 1 for v in row] for row in c3[0, 0].tolist()]
    rows3, cols3 = [0, 0, 1, 1, 2], [0, 0, 1]
    expected3 = [[lat3[i][j] + expected4[rows3[i]][cols3[j]] for j in range(3)]
                 for i in range(5)]
    assert p5[0, 0].tolist() == expected5
    assert p4[0, 0].tolist() == expected4
    assert p3[0, 0].tolist() == expected3


def test_bilinear_top_down_by_hand():
    """Bilinear (align_corners=False) 1 -> 2 pixels copies, 2 -> 4 interpolates."""
    neck = FPN((1, 1), 1, (8, 16), upsample_mode="bilinear")
    for m in (*neck.lateral_convs, *neck.fpn_convs):
        _set_conv(m, 1.0, 0.0)
    coarse = torch.tensor([[0.0, 4.0]]).reshape(1, 1, 1, 2)
    fine = torch.zeros(1, 1, 2, 4)
    p_fine, _ = neck((fine, coarse))
    # Output pixel centres at x = 0.25, 0.75, 1.25, 1.75 in source pixels,
    # i.e. source coords -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    assert p_fine[0, 0].tolist() == [[0.0, 1.0, 3.0, 4.0]] * 2


def test_extra_levels_by_hand():
    neck = FPN((1, 1), 1, (8, 16), num_outs=4)
    for m in (*neck.lateral_convs, *neck.fpn_convs):
        _set_conv(m, 1.0, 0.0)
    coarse = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)
    outs = neck((torch.zeros(1, 1, 6, 6), coarse))
    # Max-pool, kernel 1 stride 2, is subsampling of even rows/cols.
    assert outs[2][0, 0].tolist() == [[0.0, 2.0], [6.0, 8.0]]
    assert outs[3][0, 0].tolist() == [[0.0]]
    assert neck.out_strides == (8, 16, 32, 64)


@pytest.mark.parametrize("source", ["on_input", "on_lateral", "on_output"])
def test_extra_conv_source(source):
    """The first extra conv reads the requested map, checked with F.conv2d."""
    neck = FPN((4, 6), 5, (8, 16), num_outs=3, add_extra_convs=source).eval()
    inputs = [torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)]
    outs = neck(inputs)
    lateral = neck.lateral_convs[1](inputs[1])
    src = {"on_input": inputs[1], "on_lateral": lateral, "on_output": outs[1]}[source]
    conv = neck.extra_convs[0].conv
    expected = F.conv2d(src, conv.weight, conv.bias, stride=2, padding=1)
    torch.testing.assert_close(outs[2], expected)
    assert conv.in_channels == (6 if source == "on_input" else 5)


def test_registry_build_and_init():
    neck = NECKS.build(dict(type="FPN", in_channels=[8, 16, 32], out_channels=16,
                            in_strides=[8, 16, 32], num_outs=5, add_extra_convs="on_input"))
    assert isinstance(neck, FPN)
    neck.init_weights()
    assert neck.out_strides == (8, 16, 32, 64, 128)
    outs = neck(_inputs(channels=(8, 16, 32), strides=(8, 16, 32)))
    assert [o.shape[-1] for o in outs] == [8, 4, 2, 1, 1]


def test_gradients_reach_every_input():
    neck = FPN(RESNET_CHANNELS, 8, RESNET_STRIDES, num_outs=5)
    inputs = [x.requires_grad_() for x in _inputs()]
    sum(o.sum() for o in neck(inputs)).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in inputs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_strides=(4, 8)), "in_strides"),
    (dict(out_channels=0), "out_channels"),
    (dict(start_level=4), "start_level"),
    (dict(end_level=5), "end_level"),
    (dict(num_outs=2), "num_outs"),
    (dict(end_level=2, num_outs=5), "end_level"),
    (dict(add_extra_convs="on_top"), "add_extra_convs"),
    (dict(upsample_mode="cubic"), "upsample_mode"),
    (dict(in_channels=(8, -1, 32, 64)), "in_channels"),
])
def test_bad_arguments(kwargs, match):
    args = dict(in_channels=RESNET_CHANNELS, out_channels=8, in_strides=RESNET_STRIDES)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FPN(**args)


def test_bad_inputs():
    neck = FPN(RESNET_CHANNELS, 8, RESNET_STRIDES)
    with pytest.raises(ValueError, match="expected 4 input maps"):
        neck(_inputs()[:3])
    bad = _inputs()
    bad[2] = torch.randn(2, 7, 4, 4)
    with pytest.raises(ValueError, match="input 2"):
        neck(bad)
