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


def test_two_plugins_one_name_is_an_error_naming_both_only_on_lookup(site):
    make_dist(site, "alpha-nets", "1.2.0", "alpha_mod",
              COMPONENT.format(cls="DupNet", result="[DupNet]"))
    make_dist(site, "beta-nets", "0.3.1", "beta_mod",
              COMPONENT.format(cls="DupNet", result="[DupNet]"))
    manager = PluginManager(builtins=False, environ={})
    table = manager.collect()  # no error yet: a config may never use the name
    assert "DupNet" not in table["backbones"]
    msg = manager.conflicts["backbones"]["DupNet"].message()
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


# ---------------------------------------------------------------------------
# No silent failures (issue 15, item 4): through the real registries, with the
# built-ins loaded, as a user's config sees them.
from toolbox.config_check import check_config  # noqa: E402
from toolbox.errors import UnknownComponentError  # noqa: E402
from toolbox.plugins import API_VERSION, PluginWarning  # noqa: E402
from toolbox.registry import BACKBONES, LOSSES, NECKS  # noqa: E402
from toolbox.testing.fixtures import toolbox_plugins  # noqa: E402,F401

NECK_PLUGIN = """
from torch import nn
from toolbox.plugins import hookimpl

class CBAMFPN(nn.Module):
    def __init__(self, in_channels=(8,), out_channels=8):
        super().__init__()

@hookimpl
def toolbox_necks():
    return [CBAMFPN]
"""


def test_clash_fails_only_when_the_name_is_looked_up(toolbox_plugins):
    body = "from toolbox.plugins import hookimpl\nclass FPN2: pass\n" \
           "@hookimpl\ndef toolbox_necks():\n    return {'SharedNeck': FPN2}\n"
    toolbox_plugins.add("alpha-nets", "1.2.0", "alpha_necks", body)
    toolbox_plugins.add("beta-nets", "0.3.1", "beta_necks", body)
    assert NECKS.get("FPN") is not None  # unrelated names still work
    with pytest.raises(PluginConflictError) as info:
        NECKS.get("SharedNeck")
    msg = str(info.value)
    assert "alpha-nets 1.2.0" in msg and "beta-nets 0.3.1" in msg and "override" in msg


def test_misnamed_hook_warns_with_the_right_name(toolbox_plugins):
    with pytest.warns(PluginWarning, match=r"'toolbox_loss'.*not a toolbox hook.*"
                                           r"Did you mean 'toolbox_losses'"):
        toolbox_plugins.add("typo-losses", "0.1", "typo_losses", """
            from toolbox.plugins import hookimpl
            @hookimpl
            def toolbox_loss():
                return []
            """)
        LOSSES.names()


def test_unmarked_hook_function_warns(toolbox_plugins):
    toolbox_plugins.add("bare-losses", "0.1", "bare_losses",
                        "def toolbox_losses():\n    return []\n")
    with pytest.warns(PluginWarning) as record:
        LOSSES.names()
    text = " ".join(str(r.message) for r in record)
    assert "bare-losses 0.1" in text and "'toolbox_losses'" in text and "@hookimpl" in text


def test_plugin_module_without_any_hook_warns(toolbox_plugins):
    toolbox_plugins.add("empty-nets", "0.1", "empty_nets", "def build_everything():\n    pass\n")
    with pytest.warns(PluginWarning, match="empty-nets 0.1.*implements no toolbox hook"):
        LOSSES.names()


def test_unknown_allow_list_name_warns_with_the_installed_plugins(toolbox_plugins):
    toolbox_plugins.add("toolbox-cbam", "0.2.0", "cbam_mod", NECK_PLUGIN, ep_name="cbam")
    toolbox_plugins.env(TOOLBOX_PLUGINS="cbma")
    with pytest.warns(PluginWarning) as record:
        NECKS.names()
    text = " ".join(str(r.message) for r in record)
    assert "TOOLBOX_PLUGINS names 'cbma'" in text and "Did you mean 'cbam'" in text
    assert "cbam (toolbox-cbam)" in text and "template (toolbox-plugin-template)" in text


@pytest.mark.parametrize("env, reason", [
    (dict(TOOLBOX_DISABLE_PLUGIN_AUTOLOAD="1"), "TOOLBOX_DISABLE_PLUGIN_AUTOLOAD=1"),
    (dict(TOOLBOX_PLUGINS="no:cbam"), "excluded by TOOLBOX_PLUGINS=no:cbam"),
    (dict(TOOLBOX_PLUGINS="template"), "not in the allow-list TOOLBOX_PLUGINS=template"),
])
def test_unknown_name_says_which_left_out_plugin_provides_it(toolbox_plugins, env, reason):
    toolbox_plugins.add("toolbox-cbam", "0.2.0", "cbam_mod", NECK_PLUGIN, ep_name="cbam")
    toolbox_plugins.env(**env)
    with pytest.raises(UnknownComponentError) as info:
        NECKS.get("CBAMFPN")
    msg = str(info.value)
    assert "unknown neck 'CBAMFPN'" in msg
    assert "'CBAMFPN' is provided by plugin 'cbam' (toolbox-cbam 0.2.0)" in msg
    assert reason in msg


def test_unknown_name_says_which_plugin_failed_to_import(toolbox_plugins):
    with pytest.warns(PluginWarning):
        toolbox_plugins.add("toolbox-cbam", "0.2.0", "cbam_mod", "import cbam_missing_dep\n",
                            ep_name="cbam")
        with pytest.raises(UnknownComponentError) as info:
            NECKS.get("CBAMFPN")
    msg = str(info.value)
    assert "plugin 'cbam' (toolbox-cbam 0.2.0) failed to import" in msg
    assert "cbam_missing_dep" in msg and "may be the one providing this name" in msg


def test_import_error_inside_a_lazy_hook_is_named_in_the_unknown_name_error(toolbox_plugins):
    toolbox_plugins.add("toolbox-cbam", "0.2.0", "cbam_mod", """
        from toolbox.plugins import hookimpl
        @hookimpl
        def toolbox_necks():
            from cbam_mod_impl import CBAMFPN
            return [CBAMFPN]
        """, ep_name="cbam")
    with pytest.warns(PluginWarning, match="toolbox_necks"):
        with pytest.raises(UnknownComponentError, match="answer hook 'toolbox_necks'.*"
                                                        "cbam_mod_impl"):
            NECKS.get("CBAMFPN")


def test_registry_lookup_at_hook_time_is_explained(toolbox_plugins):
    with pytest.warns(PluginWarning, match="registry was looked up while the plugins are "
                                           "being loaded.*from toolbox.models.necks.fpn"):
        toolbox_plugins.add("wrap-fpn", "0.1", "wrap_fpn", """
            from toolbox.plugins import hookimpl
            from toolbox.registry import NECKS
            @hookimpl
            def toolbox_necks():
                return {"MyFPN": NECKS.get("FPN")}
            """)
        NECKS.names()


def test_override_is_shown_at_startup(toolbox_plugins, caplog):
    toolbox_plugins.add("better-fpn", "1.0", "better_fpn", """
        from toolbox.models.necks.fpn import FPN
        from toolbox.plugins import hookimpl, override
        class BetterFPN(FPN):
            pass
        @hookimpl
        def toolbox_necks():
            return {"FPN": override(BetterFPN)}
        """)
    from mmengine.config import Config
    cfg = Config(dict(model=None))
    with caplog.at_level(logging.WARNING, logger="toolbox.plugins"):
        check_config(cfg, build=False)
    assert "override in effect: FPN from better-fpn 1.0" in caplog.text
    assert "overrides the one from toolbox" in caplog.text


def test_incompatible_plugin_api_is_refused_naming_both_versions(toolbox_plugins):
    with pytest.warns(PluginWarning) as record:
        toolbox_plugins.add("future-nets", "3.0", "future_nets", """
            from toolbox.plugins import hookimpl
            TOOLBOX_API = ">=2,<3"
            class FutureNet: pass
            @hookimpl
            def toolbox_backbones():
                return [FutureNet]
            """)
        assert "FutureNet" not in BACKBONES.names()
    text = " ".join(str(r.message) for r in record)
    assert "future-nets 3.0" in text and ">=2,<3" in text
    assert f"provides plugin API {API_VERSION}" in text


def test_compatible_plugin_api_loads(toolbox_plugins):
    major = API_VERSION.split(".")[0]
    toolbox_plugins.add("now-nets", "1.0", "now_nets", f"""
        from toolbox.plugins import hookimpl
        TOOLBOX_API = ">={major},<{int(major) + 1}"
        class NowNet: pass
        @hookimpl
        def toolbox_backbones():
            return [NowNet]
        """)
    assert "NowNet" in BACKBONES.names()
