"""Plugin loading: provenance, inline plugins, broken plugins, strict mode, blocking, misspelt hooks."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass

import pytest
import typer

import bregzoo
from bregzoo import (
    Divergence,
    PluginError,
    Spec,
    create_divergence,
    create_ratio_estimator,
    hookimpl,
    list_divergences,
)
from bregzoo.plugins import ENTRY_POINT_GROUP, PluginHost, get_host

from conftest import FakeEntryPoint


@dataclass(frozen=True)
class Inline(Divergence):
    name = "inline-test"
    summary = "a test generator, r log r written as h alone"

    def h(self, r):
        return r * r.log()


def make_plugin(name: str = "acme_plugin", **hooks) -> types.ModuleType:
    """A module-like plugin whose hook functions are ``hooks`` (marked with ``hookimpl``)."""
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        fn.__name__ = hook
        setattr(module, hook, hookimpl(fn))
    return module


def raising(exc: Exception):
    def fn(*args, **kwargs):
        raise exc

    return fn


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("bregzoo: warning:")]


# -- provenance and inline plugins ----------------------------------------------------------------
def test_builtin_zoo_comes_through_entry_points_with_its_distribution_and_version():
    host = get_host()
    provider = host.provider_of("divergence", "reverse-kl")
    assert provider.dist == "bregzoo" and provider.version == md.version("bregzoo") == bregzoo.__version__
    info = host.infos[provider.plugin]
    assert "register_divergences" in info.hooks and "reverse-kl" in info.provides["divergence"]
    assert info.error is None
    for name in list_divergences():  # every name knows where it came from
        assert host.provider_of("divergence", name).dist not in ("", "?")


def test_every_zoo_entry_point_in_pyproject_is_installed():
    """A stale editable install (pyproject.toml gained an entry point since) would hide a whole plugin."""
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"][ENTRY_POINT_GROUP]
    installed = {ep.name: ep.value for ep in md.entry_points(group=ENTRY_POINT_GROUP)}
    missing = {k: v for k, v in declared.items() if installed.get(k) != v}
    assert not missing, f"not in the installed metadata: {missing}; reinstall bregzoo (pip install -e .)"


@pytest.fixture
def inline_plugin():
    """An inline plugin on the process-wide host, removed again afterwards."""
    host = get_host()
    plugin = make_plugin(
        register_divergences=lambda: [Inline],
        register_ratio_estimators=lambda: [Spec("inline-est", lambda: "built", "a test estimator")],
    )
    info = host.register(plugin, name="inline-test-plugin", dist="acme-inline", version="0.0.1")
    yield info
    host.unregister("inline-test-plugin")


def test_inline_plugin_registers_and_unregisters(inline_plugin):
    assert inline_plugin.provides == {"divergence": ["inline-test"], "ratio-estimator": ["inline-est"]}
    assert inline_plugin.hooks == ["register_divergences", "register_ratio_estimators"]
    assert "inline-test" in list_divergences("inline-*")
    assert create_divergence("inline-test") == Inline()
    assert create_ratio_estimator("inline-est") == "built"
    assert get_host().provider_of("divergence", "inline-test").dist == "acme-inline"
    get_host().unregister("inline-test-plugin")
    assert list_divergences("inline-*") == []
    assert "inline-test-plugin" not in get_host().infos


def test_duplicate_name_from_a_plugin_names_both_and_leaves_no_trace():
    host = PluginHost()
    host.load_entry_points()
    before = host.registries["divergence"].names()

    @dataclass(frozen=True)
    class Impostor(Inline):
        name = "reverse-kl"

    plugin = make_plugin(register_divergences=lambda: [Inline, Impostor])
    with pytest.raises(PluginError, match=r"duplicate divergence name 'reverse-kl'") as err:
        host.register(plugin, name="impostor", dist="acme-impostor", version="6.6")
    assert f"bregzoo {bregzoo.__version__}" in str(err.value) and "acme-impostor 6.6" in str(err.value)
    # All or nothing: 'inline-test' (added before the clash) is gone again, the original stays.
    assert host.registries["divergence"].names() == before
    assert host.provider_of("divergence", "reverse-kl").dist == "bregzoo"
    assert "impostor" not in host.infos and host.pm.get_plugin("impostor") is None


def test_factory_bug_is_a_plugin_error_naming_the_distribution():
    host = PluginHost()
    boom = Spec("boom", raising(ValueError("bad weights")))
    host.register(make_plugin(register_backbones=lambda: [boom]), name="acme.nets", dist="acme-nets", version="1.2")
    with pytest.raises(PluginError, match=r"backbone 'boom' from acme-nets 1.2.*ValueError: bad weights"):
        host.registries["backbone"].create("boom")


def test_misspelt_hook_fails_loudly_when_registered_directly():
    host = PluginHost()
    plugin = make_plugin(register_divergence=lambda: [Inline])  # missing 's'
    with pytest.raises(PluginError, match=r"unknown hook 'register_divergence'.*register_divergences"):
        host.register(plugin, name="typo", dist="acme-typo")
    assert host.pm.get_plugin("typo") is None and not host.registries["divergence"].names()


def test_a_hook_returning_junk_is_a_clear_error():
    host = PluginHost()
    with pytest.raises(PluginError, match="expected a Spec or a class with a 'name'"):
        host.register(make_plugin(register_divergences=lambda: ["reverse-kl"]), name="junk")


# -- loading entry points: broken plugins warn, strict mode raises, blocking ----------------------
@pytest.fixture
def broken_module(tmp_path, monkeypatch):
    """A real module that raises at import, with a two-line message."""
    (tmp_path / "acme_broken_mod.py").write_text('raise RuntimeError("cannot import\\nsecond line")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    yield md.EntryPoint(name="broken", value="acme_broken_mod", group=ENTRY_POINT_GROUP)
    sys.modules.pop("acme_broken_mod", None)


def test_plugin_broken_at_import_warns_once_and_the_rest_works(fresh_host, extra_entry_points, broken_module, capsys):
    extra_entry_points([FakeEntryPoint("broken", "acme-broken", broken_module.load)])
    host = get_host()
    lines = warnings_in(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert "'acme-broken.broken'" in lines[0] and "acme-broken 9.9" in lines[0]
    assert "RuntimeError: cannot import second line" in lines[0]
    assert "BREGZOO_STRICT_PLUGINS" in lines[0]
    assert host.infos["acme-broken.broken"].error.startswith("RuntimeError")
    assert len(list_divergences()) >= 12 and create_divergence("power:alpha=2").alpha == 2


def test_plugin_raising_in_its_hook_warns_and_registers_nothing(fresh_host, extra_entry_points, capsys):
    plugin = make_plugin(
        register_divergences=lambda: [Inline],
        register_metrics=raising(KeyError("missing config")),
    )
    extra_entry_points([FakeEntryPoint("half", "acme-half", lambda: plugin)])
    get_host()
    (line,) = warnings_in(capsys.readouterr().err)
    assert "'acme-half.half' from acme-half 9.9" in line and "KeyError" in line
    assert "inline-test" not in list_divergences()  # its good half is not half-registered
    assert "reverse-kl" in list_divergences()


@pytest.mark.parametrize("bad", ["import", "hook", "typo"])
def test_strict_mode_raises_instead(fresh_host, extra_entry_points, broken_module, monkeypatch, bad):
    monkeypatch.setenv("BREGZOO_STRICT_PLUGINS", "1")
    loader = {
        "import": broken_module.load,
        "hook": lambda: make_plugin(register_divergences=raising(RuntimeError("boom"))),
        "typo": lambda: make_plugin(register_divergence=lambda: [Inline]),
    }[bad]
    extra_entry_points([FakeEntryPoint("bad", "acme-bad", loader)])
    with pytest.raises(PluginError, match=r"'acme-bad.bad' from acme-bad 9.9 failed"):
        get_host()
    monkeypatch.delenv("BREGZOO_STRICT_PLUGINS")
    assert "reverse-kl" in list_divergences()  # a failed strict load is retried on the next use


def test_misspelt_hook_from_an_entry_point_warns_naming_the_hook(fresh_host, extra_entry_points, capsys):
    extra_entry_points([FakeEntryPoint("typo", "acme-typo", lambda: make_plugin(register_divergence=lambda: [Inline]))])
    get_host()
    (line,) = warnings_in(capsys.readouterr().err)
    assert "unknown hook 'register_divergence'" in line and "acme-typo" in line
    assert "inline-test" not in list_divergences()


@pytest.mark.parametrize("spelling", ["acme-broken", "ACME_broken", " acme.broken ,other"])
def test_disable_plugins_blocks_by_distribution_name(fresh_host, extra_entry_points, broken_module, monkeypatch, capsys, spelling):
    monkeypatch.setenv("BREGZOO_DISABLE_PLUGINS", spelling)
    extra_entry_points([FakeEntryPoint("broken", "acme-broken", broken_module.load)])
    host = get_host()
    assert warnings_in(capsys.readouterr().err) == []
    assert not any(i.dist == "acme-broken" for i in host.infos.values())
    assert "reverse-kl" in list_divergences()


def test_disabling_the_builtin_zoo_removes_it(fresh_host, monkeypatch):
    monkeypatch.setenv("BREGZOO_DISABLE_PLUGINS", "bregzoo")
    assert not any(i.dist == "bregzoo" for i in get_host().infos.values())
    assert "reverse-kl" not in list_divergences()


def test_a_plugin_may_use_the_registry_while_it_registers(fresh_host, extra_entry_points, capsys):
    def estimators():  # builds from another plugin's divergence at registration time
        bkl = create_divergence("bkl")
        return [Spec("uses-bkl", lambda: bkl)]

    extra_entry_points([FakeEntryPoint("zz-late", "acme-late", lambda: make_plugin(register_ratio_estimators=estimators))])
    get_host()
    assert warnings_in(capsys.readouterr().err) == []
    assert create_ratio_estimator("uses-bkl") == create_divergence("bkl")


def test_a_broken_command_hook_warns_and_other_commands_stay(capsys):
    host = PluginHost()

    def add_hello(app):
        app.command("hello")(lambda: None)

    host.register(make_plugin("good", register_commands=add_hello), name="good", dist="acme-good")
    host.register(make_plugin("bad", register_commands=raising(RuntimeError("no cli"))), name="bad", dist="acme-bad")
    app = typer.Typer()
    host.add_commands(app)
    (line,) = warnings_in(capsys.readouterr().err)
    assert "'bad' from acme-bad" in line and "RuntimeError: no cli" in line
    assert [c.name for c in app.registered_commands] == ["hello"]


# -- through a real process -----------------------------------------------------------------------
def test_cli_with_every_plugin_disabled_says_so_in_one_line():
    dists = {ep.dist.name for ep in md.entry_points(group=ENTRY_POINT_GROUP) if ep.dist}
    env = {**os.environ, "BREGZOO_DISABLE_PLUGINS": ",".join(sorted(dists))}
    env.pop("BREGZOO_STRICT_PLUGINS", None)
    cmd = [sys.executable, "-c", "from bregzoo_cli.app import main; main()", "divergences"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: no divergences are registered")
    assert "BREGZOO_DISABLE_PLUGINS" in proc.stderr
