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


# The tests below call the command in-process (one import of the built-ins
# for all of them); the ones above check the installed console script.
from toolbox.cli import main  # noqa: E402
from toolbox.testing.fixtures import toolbox_plugins  # noqa: E402,F401


def _main(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_plugins_json_honours_the_hook_point_filter(capsys):
    code, out, _ = _main(capsys, "plugins", "losses", "--json")
    listing = json.loads(out)
    assert code == 0 and set(listing["hook_points"]) == {"losses"}
    assert "FocalLoss" in {r["name"] for r in listing["hook_points"]["losses"]}


def test_plugins_name_shows_one_component(capsys):
    code, out, err = _main(capsys, "plugins", "FocalLoss")
    assert code == 0, err
    assert out.startswith("FocalLoss  (losses)")
    assert "provided by  toolbox " in out and "(plugin 'builtin')" in out
    assert "toolbox/models/losses/focal_loss.py" in out
    assert "gamma" in out and "= 2.0" in out and "alpha" in out
    assert "-alpha_t (1 - p_t) ** gamma" in out  # the docstring
    info = json.loads(_main(capsys, "plugins", "CharbonnierLoss", "--json")[1])
    assert info["distribution"] == "toolbox-plugin-template" and info["version"] == "0.1.0"
    assert {a["name"]: a["default"] for a in info["arguments"]}["eps"] == "0.001"
    code, _, err = _main(capsys, "plugins", "FocalLos")
    assert code == 2 and "Did you mean 'FocalLoss'" in err


def test_plugins_listing_shows_failed_hooks_and_clashes_without_failing(toolbox_plugins,
                                                                          capsys):
    toolbox_plugins.add("toolbox-cbam", "0.2.0", "cbam_mod", """
        from toolbox.plugins import hookimpl
        @hookimpl
        def toolbox_necks():
            from cbam_mod_impl import CBAMFPN   # not installed: fails lazily
            return [CBAMFPN]
        """, ep_name="cbam")
    clash = ("from toolbox.plugins import hookimpl\nclass N: pass\n"
             "@hookimpl\ndef toolbox_necks():\n    return {'SharedNeck': N}\n")
    toolbox_plugins.add("alpha-nets", "1.2.0", "alpha_necks", clash)
    toolbox_plugins.add("beta-nets", "0.3.1", "beta_necks", clash)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, out, err = _main(capsys, "plugins")
    assert code == 0, err
    lines = out.splitlines()
    header = lines[0]
    assert header.startswith("plugins: ") and "cbam" not in header and "alpha-nets" in header
    assert any(line.startswith("FAILED: plugin 'cbam' (toolbox-cbam 0.2.0) failed to answer "
                               "hook 'toolbox_necks': ModuleNotFoundError") for line in lines[1:4])
    assert any(line.startswith("CLASH: two plugins register 'SharedNeck'") and
               "alpha-nets 1.2.0" in line and "beta-nets 0.3.1" in line for line in lines)
    assert any(line.split()[:2] == ["SharedNeck", "CLASH:"] for line in lines)
    assert any(line.split()[:1] == ["VoVNet"] for line in lines)  # the rest still listed
    assert not any(line.startswith("FAILED") for line in lines[-3:])  # not a footer
    code, _, err = _main(capsys, "plugins", "SharedNeck")
    assert code == 2 and "two plugins register 'SharedNeck'" in err
