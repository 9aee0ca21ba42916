"""The plugin contract: discovery, clashes, overrides, failures, env switches.

Each fake plugin here is a real distribution as importlib.metadata sees it
(a ``*.dist-info`` folder with METADATA and entry_points.txt on sys.path).
"""
import logging
import sys
import textwrap
import warnings

import pytest

from toolbox.errors import PluginConflictError, PluginLoadError
from toolbox.plugins import PluginImportWarning, PluginManager

COMPONENT = """
from toolbox.plugins import hookimpl, override

class {cls}:
    def __init__(self, depth=1):
        self.depth = depth

@hookimpl
def toolbox_backbones():
    return {result}
"""


def make_dist(root, dist, version, module, body, ep_name=None):
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        f"[toolbox.plugins]\n{ep_name or dist} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name, module in list(sys.modules.items()):  # each test gets fresh modules
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


def collect(**env):
    return PluginManager(builtins=False, environ=env).collect()


def test_two_plugins_one_name_is_an_error_naming_both(site):
    make_dist(site, "alpha-nets", "1.2.0", "alpha_mod",
              COMPONENT.format(cls="DupNet", result="[DupNet]"))
    make_dist(site, "beta-nets", "0.3.1", "beta_mod",
              COMPONENT.format(cls="DupNet", result="[DupNet]"))
    with pytest.raises(PluginConflictError) as info:
        collect()
    msg = str(info.value)
    for part in ("DupNet", "backbones", "alpha-nets 1.2.0", "beta-nets 0.3.1", "override"):
        assert part in msg


def test_explicit_override_is_allowed_and_logged(site, caplog):
    make_dist(site, "alpha-nets", "1.2.0", "alpha_mod",
              COMPONENT.format(cls="DupNet", result="[DupNet]"))
    make_dist(site, "beta-nets", "0.3.1", "beta_mod",
              COMPONENT.format(cls="DupNet", result="[override(DupNet)]"))
    with caplog.at_level(logging.INFO, logger="toolbox.plugins"):
        table = collect()
    reg = table["backbones"]["DupNet"]
    assert reg.provider.distribution == "beta-nets"
    assert reg.replaced.distribution == "alpha-nets"
    assert reg.component.__module__ == "beta_mod"
    assert "overrides" in caplog.text and "alpha-nets" in caplog.text


def test_broken_plugin_warns_and_others_still_load(site):
    make_dist(site, "good-nets", "1.0", "good_mod",
              COMPONENT.format(cls="GoodNet", result="[GoodNet]"))
    make_dist(site, "bad-nets", "2.0", "bad_mod", "import not_a_real_module_xyz\n")
    with pytest.warns(PluginImportWarning) as record:
        table = collect()
    msg = str(record[0].message)
    assert "bad-nets 2.0" in msg and "not_a_real_module_xyz" in msg
    assert "GoodNet" in table["backbones"]


def test_broken_plugin_is_fatal_in_strict_mode(site):
    make_dist(site, "bad-nets", "2.0", "bad_mod", "raise RuntimeError('boom at import')\n")
    with pytest.raises(PluginLoadError, match="bad-nets 2.0.*boom at import"):
        collect(TOOLBOX_STRICT_PLUGINS="1")


def test_hook_that_raises_is_reported_like_an_import_failure(site):
    make_dist(site, "odd-nets", "0.1", "odd_mod", COMPONENT.format(cls="X", result="1/0"))
    with pytest.warns(PluginImportWarning, match="odd-nets.*toolbox_backbones.*ZeroDivision"):
        collect()


def test_autoload_can_be_disabled(site):
    make_dist(site, "alpha-nets", "1.0", "alpha_mod",
              COMPONENT.format(cls="AlphaNet", result="[AlphaNet]"))
    assert "AlphaNet" in collect()["backbones"]
    assert "AlphaNet" not in collect(TOOLBOX_DISABLE_PLUGIN_AUTOLOAD="1")["backbones"]


def test_allow_list_and_exclusions(site):
    make_dist(site, "alpha-nets", "1.0", "alpha_mod",
              COMPONENT.format(cls="AlphaNet", result="[AlphaNet]"), ep_name="alpha")
    make_dist(site, "beta-nets", "1.0", "beta_mod",
              COMPONENT.format(cls="BetaNet", result="[BetaNet]"), ep_name="beta")
    only_alpha = collect(TOOLBOX_PLUGINS="alpha")["backbones"]
    assert "AlphaNet" in only_alpha and "BetaNet" not in only_alpha
    by_dist = collect(TOOLBOX_PLUGINS="beta-nets")["backbones"]
    assert "BetaNet" in by_dist and "AlphaNet" not in by_dist
    no_beta = collect(TOOLBOX_PLUGINS="no:beta")["backbones"]
    assert "AlphaNet" in no_beta and "BetaNet" not in no_beta


def test_builtins_register_through_the_same_hooks():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginImportWarning)  # built-ins must all import
        table = PluginManager(environ={"TOOLBOX_DISABLE_PLUGIN_AUTOLOAD": "1"}).collect()
    providers = {r.provider.distribution for regs in table.values() for r in regs.values()}
    assert providers == {"toolbox"}
    assert sum(len(regs) for regs in table.values()) > 0
