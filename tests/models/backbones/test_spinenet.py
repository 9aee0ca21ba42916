"""SpineNet: structure, shapes, parameter/FLOP counts against the paper.

Heavy checks (all five archs, the paper's input sizes) run on the ``meta``
device: modules and tensors carry shapes but no data, so parameter counts and
``FlopCounterMode`` are exact and instant. Real computation uses SpineNet-49S.
"""
import functools

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

from toolbox.models.backbones.spinenet import SpineNet
from toolbox.registry import BACKBONES

pytestmark = pytest.mark.usefixtures("one_thread")  # the shared CPU is oversubscribed

ARCHS = ("49S", "49", "96", "143", "190")

# Du et al., CVPR 2020, the RetinaNet table of the SpineNet family (also the
# "in paper" columns of github.com/yan-roo/SpineNet-Pytorch): input size,
# params (M) and FLOPs (B, multiply-adds) of SpineNet + RetinaNet head.
PAPER = {"49S": (640, 12.0, 33.8), "49": (640, 28.5, 85.4), "96": (1024, 43.0, 265.4),
         "143": (1280, 66.9, 524.4), "190": (1280, 163.6, 1885.0)}
# RetinaNet head of the authors' TPU code (configs/spinenet/*_retinanet.yaml
# and the default retinanet_head params): width, convs per branch; 91 COCO
# classes (index 0 = background), 9 anchors, 5 levels.
HEAD = {"49S": (128, 4), "49": (256, 4), "96": (256, 4), "143": (256, 4), "190": (512, 7)}
NUM_CLASSES, NUM_ANCHORS, NUM_LEVELS = 91, 9, 5


def retinanet_head_params(width: int, num_convs: int, num_classes: int = NUM_CLASSES) -> int:
    """Per branch: 3x3 convs with bias shared across levels, BN (gamma, beta)
    per level after each conv; 3x3 predictors with bias."""
    tower = num_convs * (9 * width * width + width) + num_convs * NUM_LEVELS * 2 * width
    cls = 9 * width * NUM_ANCHORS * num_classes + NUM_ANCHORS * num_classes
    box = 9 * width * NUM_ANCHORS * 4 + NUM_ANCHORS * 4
    return 2 * tower + cls + box


def retinanet_head_macs(width: int, num_convs: int, size: int) -> int:
    positions = sum((size // 2 ** level) ** 2 for level in range(3, 8))
    per_position = (2 * num_convs * 9 * width * width
                    + 9 * width * NUM_ANCHORS * (NUM_CLASSES + 4))
    return per_position * positions


def meta_spinenet(**kwargs) -> SpineNet:
    with torch.device("meta"):
        return SpineNet(**kwargs).eval()


@functools.lru_cache(maxsize=None)
def meta_default(arch: str) -> SpineNet:
    """One shared (never modified) meta model per arch with default arguments."""
    return meta_spinenet(arch=arch)


def num_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- structure ---------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_depth_matches_the_name(arch):
    """The paper names models like ResNet-50 (49 convs + 1 fc): stem conv +
    weighted layers of every block + 1. A bottleneck has 3, a residual 2."""
    model = meta_default(arch)
    units = [m for m in model.modules() if type(m).__name__ == "_ResidualUnit"]
    depth = 1 + sum(len(u.branch) for u in units) + 1
    assert depth == int(arch.rstrip("S"))


def test_unused_block_is_summed_into_the_p5_output_block():
    """Hand-traced from the spec: block 11 (L5 bottleneck) has no consumer when
    output block 14 (L5 bottleneck, same channels) is built; no other merge."""
    model = meta_default("49")
    merges = {k: node.extra_inputs for k, node in model.nodes.items() if node.extra_inputs}
    assert merges == {"14": (11,)}


# -- shapes --------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_output_shapes_strides_channels(arch):
    model = meta_default(arch)
    width = {"49S": 128, "190": 512}.get(arch, 256)
    assert model.out_channels == (width,) * 5
    assert model.out_strides == (8, 16, 32, 64, 128)
    assert model.size_divisor == 128
    outs = model(torch.empty(1, 3, 256, 384, device="meta"))
    assert [tuple(o.shape) for o in outs] == [
        (1, width, 256 // s, 384 // s) for s in model.out_strides]


def test_real_forward_backward_and_odd_input_size():
    torch.manual_seed(0)
    model = SpineNet(arch="49S").train()
    outs = model(torch.randn(2, 3, 128, 128))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    sum(o.float().square().mean() for o in outs).backward()
    assert model.stem.conv.conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        odd = model.eval()(torch.randn(1, 3, 100, 150))
    assert [tuple(o.shape[-2:]) for o in odd] == [(13, 19), (7, 10), (4, 5), (2, 3), (1, 2)]
    assert all(torch.isfinite(o).all() for o in odd)


def test_registry_build_and_pruned_outputs_match_full_model():
    torch.manual_seed(0)
    full = SpineNet(arch="49S").eval()
    part = BACKBONES.build(dict(type="SpineNet", arch="49S", out_indices=(0, 2))).eval()
    assert part.out_channels == (128, 128) and part.out_strides == (8, 32)
    assert len(part.nodes) < len(full.nodes)         # blocks feeding only P6/P7 dropped
    result = part.load_state_dict(full.state_dict(), strict=False)
    assert result.missing_keys == []
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        p3, _, p5, _, _ = full(x)
        q3, q5 = part(x)
    assert torch.equal(p3, q3) and torch.equal(p5, q5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="arch"):
        SpineNet(arch="50")
    with pytest.raises(ValueError, match="out_indices"):
        SpineNet(arch="49S", out_indices=(3, 7))
    with pytest.raises(ValueError, match="frozen_stages"):
        SpineNet(arch="49S", frozen_stages=2)
    with pytest.raises(ValueError, match="images"):
        meta_default("49S")(torch.empty(1, 128, 128, device="meta"))
    with pytest.raises(Exception, match="unknown argument 'depth'"):
        BACKBONES.build(dict(type="SpineNet", depth=49))


def test_frozen_stem_norm_eval_and_drop_path():
    model = meta_spinenet(arch="49S", frozen_stages=0, norm_eval=True,
                          drop_path_rate=0.2).train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert all(p.requires_grad for p in model.nodes.parameters())
    assert not any(m.training for m in model.modules() if isinstance(m, _BatchNorm))
    rates = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
    assert len(rates) == 15 and rates == sorted(rates)
    assert rates[0] == pytest.approx(0.2 / 15) and rates[-1] == pytest.approx(0.2)


# -- parameter and FLOP counts against the paper ---------------------------------

def _total_params_m(arch: str) -> float:
    width, convs = HEAD[arch]
    return (num_params(meta_default(arch)) + retinanet_head_params(width, convs)) / 1e6


@pytest.mark.parametrize("arch", ["49", "96", "143", "190"])
def test_params_with_retinanet_head_match_paper(arch):
    """Paper values are rounded to 0.1M (<= 0.2% of 28.5M) and may or may not
    count BN moving statistics (~0.1%): 0.5% tolerance. Measured: <= 0.15%."""
    assert _total_params_m(arch) == pytest.approx(PAPER[arch][1], rel=5e-3)


def test_params_49S_match_independent_pytorch_port():
    """yan-roo/SpineNet-Pytorch reports 11.15M for SpineNet-49S + RetinaNet
    (80 classes), built from the same published rules as this file."""
    width, convs = HEAD["49S"]
    total = num_params(meta_default("49S")) + retinanet_head_params(width, convs, 80)
    assert total / 1e6 == pytest.approx(11.15, rel=5e-3)


@pytest.mark.xfail(strict=True, reason="known gap: the published 49S rules give 11.27M, "
                   "the paper reports 12.0M (see docs/spinenet.md)")
def test_params_49S_match_paper():
    assert _total_params_m("49S") == pytest.approx(PAPER["49S"][1], rel=5e-3)


def test_flops_49_with_retinanet_head_match_paper():
    """The paper counts multiply-adds; FlopCounterMode counts 2 per MAC.
    Only convs are counted (BN, activations, pooling are not): 1% tolerance."""
    size = PAPER["49"][0]
    model = meta_default("49")
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, size, size, device="meta"))
    macs = counter.get_total_flops() / 2 + retinanet_head_macs(*HEAD["49"], size)
    assert macs / 1e9 == pytest.approx(PAPER["49"][2], rel=1e-2)
