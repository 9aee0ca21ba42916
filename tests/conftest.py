"""Suite-wide set-up: the repository's plugin packages must be pip-installed.

The plugin tests exercise real distributions found through their entry
points, so if ``plugins/*`` are not installed in this environment yet, they
are installed here with pip (no sys.path tricks), once per session.

Also the opt-in ``one_thread`` fixture.
"""
import importlib
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for the module that asks for it (as an
    argument, or ``pytestmark = pytest.mark.usefixtures("one_thread")``): small
    tensors run far faster on one thread than on OpenMP threads fighting over
    a shared CPU. The previous setting is restored after the module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
