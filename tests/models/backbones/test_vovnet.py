"""VoVNet against timm's VovNet with the same weights, plus the Backbone contract.

Reference: timm's ``VovNet`` built randomly initialised (its BN statistics
perturbed so a mis-mapped buffer cannot hide), its ``state_dict()`` loaded
into ours through ``load_reference`` and into timm's ``features_only`` model
(``out_indices=(1, 2, 3, 4)``: timm's index 0 is the stride-2 stem tap).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import timm  # noqa: E402 - a declared test dependency (the reference)
from timm.models._builder import build_model_with_cfg  # noqa: E402
from timm.models.vovnet import VovNet, model_cfgs  # noqa: E402

from toolbox.models.backbones.vovnet import ARCHS, TIMM_NAMES, VoVNet  # noqa: E402
from toolbox.registry import BACKBONES  # noqa: E402

# V-27-slim is not in timm; its configuration in the authors' VoVNet.pytorch
# (vovnet27_slim) run through timm's VovNet class is the reference.
VOVNET27_SLIM_UPSTREAM = dict(
    stem_chs=[64, 64, 128], stage_conv_chs=[64, 80, 96, 112],
    stage_out_chs=[128, 256, 384, 512], layer_per_block=5,
    block_per_stage=[1, 1, 1, 1], residual=False, depthwise=False, attn="")
SMALL = "V-19-slim-dw-eSE"

pytestmark = pytest.mark.usefixtures("one_thread")  # full-size models, shared 2-core CPU


def _timm_model(arch: str, **kwargs) -> nn.Module:
    name = TIMM_NAMES.get(arch)
    if name is not None and name in timm.list_models("*vovnet*"):
        return timm.create_model(name, pretrained=False, **kwargs)
    cfg = model_cfgs[name] if name is not None else VOVNET27_SLIM_UPSTREAM
    return build_model_with_cfg(VovNet, name or "vovnet27_slim", False, model_cfg=cfg,
                                feature_cfg=dict(flatten_sequential=True), **kwargs)


def _perturb_norms(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _to_features_keys(state_dict):
    """timm features_only models flatten ``stem.0`` to ``stem_0``."""
    return {k.replace("stem.", "stem_", 1).replace("stages.", "stages_", 1): v
            for k, v in state_dict.items()}


def _reference(arch: str):
    """(timm classifier-less model, timm features_only model), same weights.

    Only the first is initialised; the second is built on the meta device
    and takes the first's tensors (``assign=True``), which keeps the full-size
    models cheap to build.
    """
    plain = _timm_model(arch, num_classes=0)
    _perturb_norms(plain)
    with torch.device("meta"):
        features = _timm_model(arch, features_only=True, out_indices=(1, 2, 3, 4))
    features.load_state_dict(_to_features_keys(plain.state_dict()), assign=True)
    return plain, features.eval()


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_matches_timm(arch, assert_maps_close):
    plain, features = _reference(arch)
    with torch.device("meta"):  # weights all come from timm (load_reference: below)
        model = VoVNet(arch=arch)
    assert _num_params(model) == _num_params(plain) == _num_params(features)
    assert model.out_channels == tuple(features.feature_info.channels())
    assert model.out_strides == tuple(features.feature_info.reduction())
    model.load_state_dict(model.convert_reference_state_dict(plain.state_dict()), assign=True)
    model.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_maps_close(model(x), features(x), atol=1e-5)


def test_registry_build_and_declared_outputs():
    with torch.device("meta"):  # shapes only
        model = BACKBONES.build(dict(type="VoVNet", arch="V-39-eSE"))
        assert isinstance(model, VoVNet)
        assert model.out_channels == (256, 512, 768, 1024)
        assert model.out_strides == (4, 8, 16, 32)
        assert model.size_divisor == 32
        assert [type(s) for s in model.stages()][0] is nn.Sequential and len(model.stages()) == 5
        outs = model(torch.zeros(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (c, 64 // s, 64 // s) for c, s in zip(model.out_channels, model.out_strides)]


def test_out_indices_select_stages(assert_maps_close):
    plain, features = _reference(SMALL)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = features(x)
    for out_indices in ([1, 3], (0, 2)):
        model = VoVNet(arch=SMALL, out_indices=out_indices)
        model.load_reference(plain.state_dict())  # drops the stages it does not build
        assert model.out_channels == tuple((112, 256, 384, 512)[i] for i in out_indices)
        assert model.out_strides == tuple((4, 8, 16, 32)[i] for i in out_indices)
        assert model.size_divisor == model.out_strides[-1]
        assert len(model.stages()) == 1 + out_indices[-1] + 1
        with torch.no_grad():
            outs = model.eval()(x)
        assert_maps_close(outs, [expected[i] for i in out_indices], atol=1e-5)


@pytest.mark.parametrize("kwargs, word", [
    (dict(out_indices=()), "out_indices"), (dict(out_indices=(4,)), "out_indices"),
    (dict(out_indices=(2, 1)), "out_indices"), (dict(out_indices=(1, 1)), "out_indices"),
    (dict(out_indices="0123"), "out_indices"), (dict(arch="V-40"), "V-39-eSE"),
    (dict(arch=dict(stem=(8, 8, 8))), "keys"), (dict(frozen_stages=5), "frozen_stages"),
    (dict(norm_cfg="BN"), "norm_cfg"),
])
def test_bad_arguments_are_explained(kwargs, word):
    with pytest.raises(ValueError, match=word):
        VoVNet(**kwargs)


def _bn_state(module):
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_stages():
    model = VoVNet(arch=SMALL, frozen_stages=2)
    model.train()
    stem, s2, s3, s4, s5 = model.stages()
    for frozen in (stem, s2, s3):
        assert not any(p.requires_grad for p in frozen.parameters())
        assert not any(m.training for m in frozen.modules())
    for live in (s4, s5):
        assert all(p.requires_grad for p in live.parameters())
        assert all(m.training for m in live.modules())
    before_frozen, before_live = _bn_state(s3), _bn_state(s4)
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(torch.equal(a, b) for a, b in zip(before_frozen, _bn_state(s3)))
    assert not all(torch.equal(a, b) for a, b in zip(before_live, _bn_state(s4)))
    assert all(p.grad is None for p in s3.parameters())
    assert all(p.grad is not None for p in s4.parameters())


def test_norm_eval():
    model = VoVNet(arch=SMALL, norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert all(p.requires_grad for p in model.parameters())
    before = _bn_state(model)
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_state(model)))
    assert model.stem[0].conv.weight.grad is not None


def test_load_reference_from_saved_files(tmp_path, assert_maps_close):
    plain, features = _reference("V-19-slim-eSE")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = features(x)
    for name, state in (("plain.pth", plain.state_dict()),
                        ("features.pth", features.state_dict())):
        torch.save(state, tmp_path / name)
        model = VoVNet(arch="V-19-slim-eSE")
        model.load_reference(str(tmp_path / name))
        with torch.no_grad():
            assert_maps_close(model.eval()(x), expected, atol=1e-5)


def test_reference_of_another_arch_is_refused():
    depthwise = _timm_model("V-19-slim-dw-eSE", num_classes=0).state_dict()
    with pytest.raises(KeyError, match="conv_dw"):
        VoVNet(arch="V-19-slim-eSE").load_reference(depthwise)


def test_batchnorms_fold_into_convs(assert_maps_close):
    from mmcv.cnn import fuse_conv_bn

    plain, _ = _reference(SMALL)
    model = VoVNet(arch=SMALL)
    model.load_reference(plain.state_dict())
    model.eval()
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_maps_close(fused(x), model(x), atol=1e-4)
