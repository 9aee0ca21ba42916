"""Registries: lazy loading, unknown names, misspelled constructor arguments."""
import subprocess
import sys

import pytest
from torch import nn

from toolbox.errors import ConfigArgumentError, UnknownComponentError
from toolbox.hookspecs import HOOK_POINTS
from toolbox.registry import BACKBONES, LOSSES, REGISTRIES


class SpellingNet(nn.Module):
    def __init__(self, depth: int, width_mult: float = 1.0, frozen_stages: int = -1):
        super().__init__()
        self.depth, self.width_mult = depth, width_mult


@pytest.fixture
def spelling_net():
    BACKBONES.register_module(module=SpellingNet, force=True)
    yield
    BACKBONES._module_dict.pop("SpellingNet", None)


def test_one_registry_per_hook_point_under_one_scope():
    assert set(REGISTRIES) == {"backbones", "necks", "heads", "losses", "models",
                               "datasets", "transforms", "metrics", "hooks", "functions"}
    assert tuple(REGISTRIES) == HOOK_POINTS
    assert {r.scope for r in REGISTRIES.values()} == {"toolbox"}


def test_build_from_config_dict(spelling_net):
    net = BACKBONES.build(dict(type="SpellingNet", depth=3, width_mult=0.5))
    assert isinstance(net, SpellingNet) and net.depth == 3 and net.width_mult == 0.5


def test_unknown_name_suggests_close_names_and_the_listing_command(spelling_net):
    with pytest.raises(UnknownComponentError) as info:
        BACKBONES.build(dict(type="SpelingNet", depth=3))
    msg = str(info.value)
    assert "'SpelingNet'" in msg and "backbones" in msg
    assert "Did you mean 'SpellingNet'" in msg
    assert "toolbox plugins" in msg


def test_misspelled_argument_names_component_key_and_accepted(spelling_net):
    with pytest.raises(ConfigArgumentError) as info:
        BACKBONES.build(dict(type="SpellingNet", depth=3, widht_mult=0.5))
    msg = str(info.value)
    assert "SpellingNet" in msg and "'widht_mult'" in msg
    assert "Did you mean 'width_mult'" in msg
    assert "depth, width_mult, frozen_stages" in msg


def test_missing_required_argument_is_named(spelling_net):
    with pytest.raises(ConfigArgumentError, match="SpellingNet.*missing.*depth"):
        BACKBONES.build(dict(type="SpellingNet"))


def test_unknown_loss_in_another_hook_point():
    with pytest.raises(UnknownComponentError, match="hook point 'losses'"):
        LOSSES.get("NoSuchLossAnywhere")


def test_import_toolbox_is_lazy():
    """``import toolbox`` imports nothing heavy (its time: benchmarks/import_time.py)."""
    code = "import sys, toolbox; print('torch' in sys.modules, 'mmengine' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_reloading_plugins_keeps_direct_registrations(spelling_net):
    from toolbox.plugins import reset
    reset()  # e.g. the toolbox_plugins fixture of toolbox.testing
    assert BACKBONES.get("SpellingNet") is SpellingNet
    assert "VoVNet" in BACKBONES.names()  # and the plugins come back
