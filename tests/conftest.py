"""Suite-wide set-up: the repository's plugin packages must be pip-installed.

The plugin tests exercise real distributions found through their entry
points, so if ``plugins/*`` are not installed in this environment yet, they
are installed here with pip (no sys.path tricks), once per session.
"""
import importlib
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DISTS = {"toolbox-plugin-template": ROOT / "plugins" / "toolbox-plugin-template",
                "toolbox-timm": ROOT / "plugins" / "toolbox-timm"}


def _install_missing_plugins():
    missing = []
    for dist, path in PLUGIN_DISTS.items():
        try:
            md.distribution(dist)
        except md.PackageNotFoundError:
            missing.append(str(path))
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-build-isolation", *missing], check=True)
        importlib.invalidate_caches()


def pytest_configure(config):
    _install_missing_plugins()
