"""The CLI skeleton: help, plugins, divergences, and one-line user errors (exit code 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import bregzoo
from bregzoo import BregzooError, list_divergences
from bregzoo_cli.app import get_app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(get_app(), list(args))


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in ("plugins", "divergences", "--debug"):
        assert command in result.stdout


def test_plugins_table_shows_the_builtin_zoo():
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    assert "bregzoo.divergences" in result.stdout and bregzoo.__version__ in result.stdout
    assert "reverse-kl" in result.stdout


def test_plugins_json_lists_distribution_version_hooks_and_names():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    infos = json.loads(result.stdout)
    zoo = [i for i in infos if i["dist"] == "bregzoo"]
    assert zoo and all(i["version"] == bregzoo.__version__ and i["error"] is None for i in zoo)
    divs = next(i for i in zoo if "divergence" in i["provides"])
    assert divs["hooks"] == ["register_divergences"]
    assert {"reverse-kl", "power", "bkl"} <= set(divs["provides"]["divergence"])
    estimators = next(i for i in zoo if "ratio-estimator" in i["provides"])
    assert {"classifier", "lsif", "kliep"} <= set(estimators["provides"]["ratio-estimator"])


def test_divergences_lists_every_registered_one_with_formulas():
    from bregzoo_cli.app import get_app

    names = list_divergences()
    assert len(names) >= 12
    out = {}
    for columns in (200, 80):  # the table follows the terminal's width; names are never split
        result = runner.invoke(get_app(), ["divergences"], env={"COLUMNS": str(columns)})
        assert result.exit_code == 0, result.output
        out[columns] = result.stdout
        assert f"{len(names)} divergences" in result.stdout
        assert all(name in result.stdout for name in names), columns
        assert max(len(line) for line in result.stdout.splitlines()) <= columns
    assert "r log r" in out[200] and "(1 + a) r^a" in out[200]


def test_divergences_json_matches_the_registry():
    rows = json.loads(invoke("divergences", "--json").stdout)
    assert [row["name"] for row in rows] == list_divergences()
    power = next(row for row in rows if row["name"] == "power")
    assert power["params"] == {"alpha": 0.5} and power["omega"] == "(1 + a) r^a" and power["provider"] == "bregzoo"


def test_divergences_pattern_selects():
    result = invoke("divergences", "*kl*", "--json")
    assert result.exit_code == 0, result.output
    assert [row["name"] for row in json.loads(result.stdout)] == list_divergences("*kl*")
    assert "lsif" not in result.stdout


def test_divergences_plot_writes_a_png(tmp_path):
    out = tmp_path / "w.png"
    result = invoke("divergences", "*kl*", "--plot", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


@pytest.mark.parametrize("args, message", [
    (("divergences", "nothing-*"), "error: no divergence matches 'nothing-*'"),
    (("divergences", "--plot", "/nonexistent-dir/w.png", "kl"), "error:"),
])
def test_user_errors_are_one_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_debug_lets_the_traceback_through():
    result = invoke("--debug", "divergences", "nothing-*")
    assert isinstance(result.exception, BregzooError)
    assert result.exit_code != 2  # the error propagated instead of being turned into one line
    assert invoke("divergences", "nothing-*").exit_code == 2  # and --debug does not stick


def test_math_doc_weight_table_matches_the_builtin_registry():
    """docs/math.md's weight dictionary lists exactly the built-ins, with the registry's formulas."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "math.md").read_text(encoding="utf-8")
    table = doc.split("<!-- weight-table:start -->")[1].split("<!-- weight-table:end -->")[0]
    documented = {}
    for line in table.strip().splitlines()[2:]:  # skip the header and the |---| rule
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        documented[cells[0]] = (cells[1], cells[2])
    rows = json.loads(invoke("divergences", "--json").stdout)
    builtin = {row["name"]: (row["h"], row["omega"]) for row in rows if row["provider"] == "bregzoo"}
    assert documented == builtin


def test_a_broken_plugin_does_not_break_the_cli(fresh_host, extra_entry_points, capsys):
    from conftest import FakeEntryPoint

    def load():
        raise ImportError("No module named 'acme_missing_dependency'")

    extra_entry_points([FakeEntryPoint("broken", "acme-broken", load)])
    result = invoke("divergences", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) >= 12
    err = capsys.readouterr().err + result.stderr  # the host loads inside or outside the runner
    (line,) = [x for x in err.splitlines() if x.startswith("bregzoo: warning:")]
    assert "acme-broken" in line and "acme_missing_dependency" in line
    listed = json.loads(invoke("plugins", "--json").stdout)
    assert next(i for i in listed if i["dist"] == "acme-broken")["error"].startswith("ImportError")


def _modules_after(code: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


# torch itself was imported (its C extension loaded), not only named: a module that defers torch with
# lazy_loader puts a placeholder called "torch" in sys.modules.
TORCH_LOADED = "torch._C"


def test_importing_the_errors_and_the_cli_does_not_import_torch():
    assert TORCH_LOADED not in _modules_after("import bregzoo.errors, bregzoo_cli.app")


def _cli(*argv: str) -> str:
    """Run the console script's main() in a fresh interpreter with ``argv``; returns code checking its output."""
    return ("import sys, contextlib, io\nfrom bregzoo_cli import app\n"
            f"sys.argv = ['bregzoo', {', '.join(map(repr, argv))}]\n"
            "with contextlib.redirect_stdout(io.StringIO()) as buf, contextlib.suppress(SystemExit):\n"
            "    app.main()\nout = buf.getvalue()\n")


def test_a_builtin_commands_help_is_shown_without_loading_plugins_or_torch():
    assert TORCH_LOADED not in _modules_after(_cli("train", "--help") + "assert '--divergence' in out, out")


@pytest.mark.parametrize("argv, shows", [
    (("--help",), "convert"),  # a plugin's command (the zoo's edm) is listed, so every plugin was loaded
    (("plugins", "--json"), '"bregzoo.divergences"'),
    (("divergences", "--json"), '"reverse-kl"'),
])
def test_listing_the_zoo_does_not_import_torch(argv, shows):
    """Issue N: --help, plugins and divergences start in well under a second, since torch (about 2 s) waits
    for the first command that computes. The installed example plugin (bregzoo-alpha) defers it too."""
    modules = _modules_after(_cli(*argv) + f"assert {shows!r} in out, out")
    assert TORCH_LOADED not in modules
    assert "bregzoo_zoo.divergences" in modules or argv[0] != "divergences"


def test_the_package_names_still_resolve_lazily():
    assert bregzoo.Divergence.__module__ == "bregzoo.divergence"
    assert set(bregzoo.__all__) <= set(dir(bregzoo))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bregzoo.nope  # noqa: B018
