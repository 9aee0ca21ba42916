"""tools/convert_weights.py and toolbox.convert: layout detection, the
model-driven layouts (backbone, MONAI UNETR), the strict check against the
config's model and the errors for bad sources. The detector layouts are
tested with their reference detectors in tests/reference/."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from mmengine.config import Config

from toolbox.convert import ConversionError, convert_checkpoint, detect_layout, read_state_dict
from toolbox.checkpoint_io import load_checkpoint
from toolbox.registry import MODELS

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
R18 = ROOT / "configs/resnet/retinanet_r18_fpn_synth.py"


def test_backbone_layout_fills_the_backbone_through_its_own_mapping(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    src = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), src)
    dst = tmp_path / "out" / "r18_backbone.pth"
    meta = convert_checkpoint(str(src), str(dst), format="backbone", config=str(R18))
    assert meta["format"] == "backbone" and meta["checked_against"] == str(R18)
    ckpt = load_checkpoint(str(dst))  # weights_only with the toolbox's allow-list
    state = ckpt["state_dict"]
    assert all(k.startswith("backbone.") for k in state)
    model = MODELS.build(Config.fromfile(str(R18)).model)
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert all(not k.startswith("backbone.") for k in result.missing_keys)
    # the backbone now computes torchvision's features (C3-C5 of ResNet-18)
    model.eval()
    reference.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = model.backbone(x)
        r = reference
        c2 = r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))
        c5 = r.layer4(r.layer3(r.layer2(c2)))
    torch.testing.assert_close(feats[-1], c5, rtol=1e-4, atol=1e-5)


def test_monai_unetr_is_detected_and_converted(tmp_path):
    import monai.networks.nets as nets  # a declared test dependency (the reference)
    torch.manual_seed(0)
    reference = nets.UNETR(in_channels=1, out_channels=5, img_size=32, feature_size=16,
                           hidden_size=96, mlp_dim=384, num_heads=4, proj_type="conv",
                           norm_name="instance", res_block=True).eval()
    # MONAI's UNETR has 12 ViT blocks; the small config reads 4, so build a
    # 12-layer variant of the small config for the check.
    cfg = Config.fromfile(str(ROOT / "configs/unetr/unetr_3d_synth.py"))
    cfg.model.backbone.num_layers = 12
    cfg.model.backbone.out_indices = (3, 6, 9, 11)
    state = reference.state_dict()
    assert detect_layout(state).name == "monai-unetr"
    src, dst = tmp_path / "unetr.pth", tmp_path / "unetr_toolbox.pth"
    torch.save(state, src)
    config_path = tmp_path / "unetr_12.py"
    cfg.dump(str(config_path))
    convert_checkpoint(str(src), str(dst), config=str(config_path))
    model = MODELS.build(cfg.model).eval()
    model.load_state_dict(load_checkpoint(str(dst))["state_dict"], strict=True)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert (model(x, mode="tensor") - reference(x)).abs().max() < 1e-5


def test_a_state_dict_of_the_wrong_model_names_the_mismatching_keys(tmp_path):
    src = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), src)
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(str(src), str(tmp_path / "x.pth"), format="backbone",
                           config=str(R18))
    message = str(err.value)
    assert "shape mismatches" in message or "have no place" in message or "unexpected" in message
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize("content, expected", [
    (b"not a checkpoint at all\n", "cannot read"),
    (None, "cannot read"),  # a torn (truncated) zip
])
def test_unreadable_sources_are_named(tmp_path, content, expected):
    src = tmp_path / "bad.pth"
    if content is None:
        good = tmp_path / "good.pth"
        torch.save(torchvision.models.resnet18().state_dict(), good)
        content = good.read_bytes()[:5000]
    src.write_bytes(content)
    with pytest.raises(ConversionError, match=expected) as err:
        read_state_dict(str(src))
    assert str(src) in str(err.value)


def test_unknown_layout_and_missing_config_are_clear(tmp_path):
    with pytest.raises(ConversionError, match="cannot tell the layout.*--format"):
        detect_layout({"some.weight": torch.zeros(1)})
    src = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    with pytest.raises(ConversionError, match="give the config"):
        convert_checkpoint(str(src), str(tmp_path / "x.pth"), format="backbone")


def test_command_line_exit_status_and_message(tmp_path):
    src = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), src)
    tool = str(ROOT / "tools/convert_weights.py")
    ok = subprocess.run([sys.executable, tool, str(src), str(tmp_path / "o.pth"), "--format",
                         "backbone", "--config", str(R18)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "checked against" in ok.stdout and (tmp_path / "o.pth").is_file()
    bad = subprocess.run([sys.executable, tool, str(tmp_path / "missing.pth"),
                          str(tmp_path / "p.pth")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "not found" in bad.stderr and "Traceback" not in bad.stderr
