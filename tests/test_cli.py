"""The ``toolbox`` console script."""
import json
import shutil
import subprocess
import sys


def _toolbox(*args):
    exe = shutil.which("toolbox")
    cmd = [exe] if exe else [sys.executable, "-m", "toolbox.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)


def test_plugins_lists_builtins_and_both_plugin_distributions():
    run = _toolbox("plugins")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for point in ("backbones", "necks", "heads", "losses", "models", "datasets",
                  "transforms", "metrics"):
        assert f"\n{point} (" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()
             if line.startswith("  ") and line.split()}
    assert lines["VoVNet"][:1] == ["toolbox"]
    assert lines["SwinTransformer"][:1] == ["toolbox"]
    assert lines["TimmBackbone"][:2] == ["toolbox-timm", "0.1.0"]
    assert lines["TemplateNet"][:2] == ["toolbox-plugin-template", "0.1.0"]
    assert lines["CharbonnierLoss"][:1] == ["toolbox-plugin-template"]


def test_plugins_json_is_machine_readable_and_filterable():
    listing = json.loads(_toolbox("plugins", "--json").stdout)
    providers = {p["distribution"] for p in listing["plugins"]}
    assert {"toolbox", "toolbox-timm", "toolbox-plugin-template"} <= providers
    names = {r["name"] for r in listing["hook_points"]["metrics"]}
    assert {"CocoMetric", "VOCMetric"} <= names
    assert listing["failed"] == []
    only = _toolbox("plugins", "losses").stdout
    assert "\nlosses (" in only and "\nbackbones (" not in only


def test_train_and_test_subcommands_share_the_tools_arguments():
    for sub in ("train", "test"):
        run = _toolbox(sub, "--help")
        assert run.returncode == 0 and "--cfg-options" in run.stdout
    missing = _toolbox("train", "no/such/config.py")
    assert missing.returncode != 0 and "no/such/config.py" in missing.stderr
