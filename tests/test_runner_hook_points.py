"""The ``hooks`` and ``functions`` hook points, and how the built-ins load."""
import pytest
from mmengine.registry import FUNCTIONS as MME_FUNCTIONS
from mmengine.registry import HOOKS as MME_HOOKS
from mmengine.registry import DefaultScope

from toolbox import hookspecs, plugins
from toolbox.registry import FUNCTIONS, HOOKS, HookPointRegistry
from toolbox.testing.fixtures import toolbox_plugins  # noqa: F401

RUNNER_PARTS = """
from mmengine.hooks import Hook
from toolbox.plugins import hookimpl

class CountingHook(Hook):
    def __init__(self, every=1):
        self.every = every

def pair_collate(batch):
    return list(zip(*batch))

@hookimpl
def toolbox_hooks():
    return [CountingHook]

@hookimpl
def toolbox_functions():
    return {"pair_collate": pair_collate}
"""


def test_hookimpl_lives_beside_the_hookspecs():
    assert plugins.hookimpl is hookspecs.hookimpl
    assert {"hooks", "functions"} <= set(hookspecs.HOOK_POINTS)


def test_builtins_are_loaded_by_name():
    assert plugins.BUILTIN_PLUGINS == ("toolbox.builtin",)
    assert "builtin" in {p.plugin for p in plugins.loaded_manager().plugins}


def test_runner_registries_are_hook_point_children_of_mmengine_roots():
    for registry, root in ((HOOKS, MME_HOOKS), (FUNCTIONS, MME_FUNCTIONS)):
        assert isinstance(registry, HookPointRegistry)
        assert registry.parent is root and registry.scope == "toolbox"


def test_builtin_engine_hooks_and_collate_functions_come_through_hook_points():
    table = plugins.ensure_loaded()
    assert {"ProgressBarHook", "NonFiniteGuardHook", "ResumeStateHook",
            "DetVisualizationHook", "ClassFrequencyHook"} <= set(table["hooks"])
    assert {"det_collate", "seg_collate"} <= set(table["functions"])
    with DefaultScope.overwrite_default_scope("toolbox"):
        hook = MME_HOOKS.build(dict(type="ProgressBarHook"))
    assert type(hook).__name__ == "ProgressBarHook"
    assert MME_FUNCTIONS.get("toolbox.det_collate") is table["functions"]["det_collate"].component


def test_a_plugin_adds_a_runner_hook_and_a_function(toolbox_plugins):
    toolbox_plugins.add("toolbox-parts", "0.1.0", "runner_parts_plugin", RUNNER_PARTS)
    with DefaultScope.overwrite_default_scope("toolbox"):
        hook = MME_HOOKS.build(dict(type="CountingHook", every=3))
    assert hook.every == 3
    assert MME_FUNCTIONS.get("toolbox.pair_collate")([(1, "a"), (2, "b")]) == [(1, 2), ("a", "b")]
    assert HOOKS.providers["CountingHook"].distribution == "toolbox-parts"


def test_an_unknown_hook_is_explained():
    with pytest.raises(KeyError, match="hook point 'hooks'.*ProgressBarHook"):
        HOOKS.get("ProgresBarHook")
