"""toolbox-timm, pip-installed: timm features behind the backbone contract."""
import importlib.metadata as md

import pytest
import timm
import torch

from toolbox.registry import BACKBONES


def test_registered_through_its_entry_point():
    eps = [ep for ep in md.entry_points(group="toolbox.plugins") if ep.name == "timm"]
    assert len(eps) == 1 and eps[0].dist.metadata["Name"] == "toolbox-timm"
    assert BACKBONES.providers["TimmBackbone"].distribution == "toolbox-timm"


def test_declares_outputs_from_timm_feature_info():
    net = BACKBONES.build(dict(type="TimmBackbone", model_name="resnet18", out_indices=(2, 3, 4)))
    assert [(s.channels, s.stride) for s in net.output_shape()] == [(128, 8), (256, 16), (512, 32)]
    outs = net.eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    reference = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = BACKBONES.build(dict(type="TimmBackbone", model_name="resnet18",
                               out_indices=(4,), pretrained_file=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_features(x)  # the stride-32 map of the same weights
        (got,) = net(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_bad_model_name_and_missing_file_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown timm model 'resnet_nope'"):
        BACKBONES.build(dict(type="TimmBackbone", model_name="resnet_nope"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        BACKBONES.build(dict(type="TimmBackbone", model_name="resnet18",
                             pretrained_file=str(tmp_path / "missing.pth")))


def test_frozen_stages_freeze_leading_modules():
    net = BACKBONES.build(dict(type="TimmBackbone", model_name="resnet18", frozen_stages=1))
    net.train()
    first, second, later = net.stages()[0], net.stages()[1], net.stages()[-1]
    assert not any(p.requires_grad for p in first.parameters())
    assert not any(p.requires_grad for p in second.parameters())
    assert all(p.requires_grad for p in later.parameters())
