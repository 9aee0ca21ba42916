"""``toolbox new-plugin`` end to end (issue 15, item 1): the generated package
is pip-installed into this environment, passes its own tests, shows in
``toolbox plugins``, and its config trains through ``tools/train.py`` with
the short-run recipe (item 7)."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolbox.scaffold import KINDS, ScaffoldError, new_plugin

ROOT = Path(__file__).resolve().parents[2]
NAME = "scaffoldcheck"  # unlikely to clash with anything installed
DIST = f"toolbox-{NAME}"


def _run(*cmd, cwd=None, timeout=600):
    return subprocess.run([*cmd], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """One generated package with every kind, installed for this module only."""
    where = tmp_path_factory.mktemp("scaffold")
    cli = _run(sys.executable, "-m", "toolbox.cli", "new-plugin", NAME,
               "--kind", ",".join(KINDS), "--dir", str(where))
    assert cli.returncode == 0, cli.stderr
    package = where / DIST
    pip = _run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--no-build-isolation", "-e", str(package))
    assert pip.returncode == 0, pip.stderr
    importlib.invalidate_caches()
    try:
        yield package
    finally:
        _run(sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", DIST)
        importlib.invalidate_caches()
        from toolbox.plugins import reset
        reset()


@pytest.mark.slow
def test_generated_package_passes_its_own_tests(installed):
    run = _run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
               cwd=installed)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


def test_generated_components_are_listed_with_their_distribution_and_file(installed):
    run = _run(sys.executable, "-m", "toolbox.cli", "plugins", "ScaffoldcheckNeck", "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["distribution"] == DIST and info["hook_point"] == "necks"
    assert info["file"].startswith(str(installed))
    assert any(a["name"] == "kernel_size" and a["default"] == "7" for a in info["arguments"])
    assert "spatial attention" in info["doc"]


@pytest.mark.slow
def test_generated_config_trains_with_the_short_run_recipe(installed, tmp_path):
    config = installed / "configs" / f"{NAME}_synth.py"
    run = _run(sys.executable, str(ROOT / "tools" / "train.py"), str(config),
               "--work-dir", str(tmp_path / "work"),
               "--cfg-options", "short_run.max_iters=2", "short_run.num_images=4")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "work" / "iter_2.pth").is_file()
    assert "scaffoldcheck/recall" in run.stdout + run.stderr  # validated with its metric


def test_default_kinds_and_layout(tmp_path):
    root = new_plugin("my-thing", directory=tmp_path)
    assert root.name == "toolbox-my-thing"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"pyproject.toml", "README.md", "toolbox_my_thing/plugin.py",
            "toolbox_my_thing/neck.py", "toolbox_my_thing/loss.py",
            "configs/my_thing_synth.py", "tests/test_my_thing.py"} <= files
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."toolbox.plugins"]' in pyproject
    assert 'my_thing = "toolbox_my_thing.plugin"' in pyproject
    plugin = (root / "toolbox_my_thing" / "plugin.py").read_text()
    assert "TOOLBOX_API" in plugin and "def toolbox_necks" in plugin
    assert "def toolbox_backbones" not in plugin
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_bad_names_and_kinds_are_refused(tmp_path):
    with pytest.raises(ScaffoldError, match="must start with a letter"):
        new_plugin("1bad", directory=tmp_path)
    with pytest.raises(ScaffoldError, match="unknown kind.*choose from"):
        new_plugin("good", ["nek"], directory=tmp_path)
    new_plugin("good", directory=tmp_path)
    with pytest.raises(ScaffoldError, match="exists and is not empty"):
        new_plugin("good", directory=tmp_path)
