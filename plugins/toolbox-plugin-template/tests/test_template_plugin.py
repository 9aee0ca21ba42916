"""The template plugin, pip-installed: usable from configs with no import line."""
import importlib.metadata as md
import json
import math
import subprocess
import sys

import torch

from toolbox.registry import BACKBONES, LOSSES, NECKS


def test_installed_as_a_distribution_with_an_entry_point():
    eps = [ep for ep in md.entry_points(group="toolbox.plugins") if ep.name == "template"]
    assert len(eps) == 1 and eps[0].dist.metadata["Name"] == "toolbox-plugin-template"


def test_components_build_from_config_dicts():
    backbone = BACKBONES.build(dict(type="TemplateNet", widths=(8, 16, 32)))
    neck = NECKS.build(dict(type="TemplateNeck", input_shape=backbone.output_shape(),
                            out_channels=12))
    feats = neck(backbone(torch.randn(2, 3, 64, 64)))
    assert [f.shape[-1] for f in feats] == [64 // spec.stride for spec in backbone.output_shape()]
    assert [spec.stride for spec in backbone.output_shape()] == [4, 8, 16]
    assert all(f.shape[1] == 12 for f in feats) and [spec.channels for spec in neck.output_shape()] == [12, 12, 12]


def test_loss_matches_the_formula_by_hand():
    loss = LOSSES.build(dict(type="CharbonnierLoss", eps=0.5))
    pred, target = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0])
    # errors 0 and 2: sqrt(0 + .25) - .5 = 0 ; sqrt(4 + .25) - .5 = 1.5616
    expected = (0.0 + math.sqrt(4.25) - 0.5) / 2
    assert math.isclose(loss(pred, target).item(), expected, rel_tol=1e-6)


def test_listed_by_the_toolbox_command_with_its_distribution():
    out = subprocess.run([sys.executable, "-m", "toolbox.cli", "plugins", "--json"],
                         capture_output=True, text=True, check=True).stdout
    listing = json.loads(out)
    rows = {r["name"]: r for r in listing["hook_points"]["backbones"]}
    assert rows["TemplateNet"]["distribution"] == "toolbox-plugin-template"
    assert rows["TemplateNet"]["version"] == "0.1.0"
    assert {r["name"] for r in listing["hook_points"]["losses"]} >= {"CharbonnierLoss"}


# The contracts, checked with the toolbox's testing kit (toolbox.testing).
from toolbox import testing  # noqa: E402


def test_backbone_declares_what_it_returns():
    testing.check_backbone(dict(type="TemplateNet", widths=(8, 16, 32)))
    testing.check_backbone(dict(type="TemplateNet", widths=(8, 16, 32, 64), out_indices=(1, 3)),
                           sizes=[(64, 64), (96, 160)])


def test_neck_declares_what_it_returns():
    testing.check_neck(dict(type="TemplateNeck", out_channels=12),
                       in_channels=(8, 16, 32), in_strides=(4, 8, 16))


def test_loss_honours_weight_avg_factor_and_empty_targets():
    testing.check_loss(dict(type="CharbonnierLoss", eps=0.01), kind="regression")
