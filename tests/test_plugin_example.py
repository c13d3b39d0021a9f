"""The example third-party package bregzoo-alpha, seen from bregzoo: listed, checked, trained, removable.

`make install` installs it (pip install -e ./plugins/examples/bregzoo-alpha). These tests run the real
console script in a subprocess, so each one sees a freshly loaded plugin host and environment.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import math
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bregzoo import UnknownNameError, create_divergence, list_divergences, list_ratio_estimators
from bregzoo.plugins import reset_host
from bregzoo_cli.app import get_app

BREGZOO = Path(sys.executable).with_name("bregzoo")

pytestmark = pytest.mark.skipif(
    not any(d.metadata["Name"] == "bregzoo-alpha" for d in md.distributions()),
    reason="the example plugin is not installed: pip install -e ./plugins/examples/bregzoo-alpha",
)


def bregzoo(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full = {**os.environ, "BREGZOO_DISABLE_PLUGINS": "", **(env or {})}
    return subprocess.run([str(BREGZOO), *args], capture_output=True, text=True, env=full, timeout=timeout)


def test_plugins_lists_the_package_with_its_version_and_names():
    res = bregzoo("plugins", "--json")
    assert res.returncode == 0, res.stderr
    mine = {p["name"]: p for p in json.loads(res.stdout) if p["dist"] == "bregzoo-alpha"}
    assert set(mine) == {"bregzoo-alpha.alpha", "bregzoo-alpha.rulsif", "bregzoo-alpha.alpha-sweep"}
    assert {p["version"] for p in mine.values()} == {md.version("bregzoo-alpha")} == {"0.1.0"}
    assert mine["bregzoo-alpha.alpha"]["provides"] == {"divergence": ["alpha"]}
    assert mine["bregzoo-alpha.rulsif"]["provides"] == {"ratio-estimator": ["rulsif"]}
    assert mine["bregzoo-alpha.alpha-sweep"]["hooks"] == ["register_commands"]
    assert all(p["error"] is None for p in mine.values())


def test_its_names_reach_the_registries_and_the_cli():
    assert "alpha" in list_divergences("alpha*") and "rulsif" in list_ratio_estimators()
    res = CliRunner().invoke(get_app(), ["divergences", "alpha*", "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["provider"] == "bregzoo-alpha" and row["omega"] == "r^((a-1)/2)"
    assert CliRunner().invoke(get_app(), ["alpha-sweep", "--alphas=1"]).exit_code == 0


def test_check_passes_for_the_alpha_family():
    res = bregzoo("check", "--divergence", "alpha*", "--json", timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["passed"] and report["total"] >= 7
    assert "alpha:alpha=0.0" in {r["subject"] for r in report["results"]}
    assert all(r["passed"] for r in report["results"])


# Runs several commands in one fresh interpreter (one torch import instead of one a command).
_MANY = """
import json, sys
from typer.testing import CliRunner
from bregzoo_cli.app import get_app
app, runner = get_app(), CliRunner()
results = [runner.invoke(app, args) for args in json.loads(sys.argv[1])]
print(json.dumps([[r.exit_code, r.output] for r in results]))
"""


def test_disabled_plugin_leaves_everything_else_working(monkeypatch):
    """BREGZOO_DISABLE_PLUGINS=bregzoo-alpha is what bregzoo sees after `pip uninstall bregzoo-alpha`."""
    commands = [["plugins", "--json"], ["divergences", "--json"], ["alpha-sweep"], ["divergences", "alpha*"]]
    env = {**os.environ, "BREGZOO_DISABLE_PLUGINS": "bregzoo-alpha"}
    proc = subprocess.run([sys.executable, "-c", _MANY, json.dumps(commands)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (c1, plugins), (c2, divs), (c3, sweep), (c4, missing) = json.loads(proc.stdout)
    dists = {p["dist"] for p in json.loads(plugins)}
    assert c1 == 0 and "bregzoo-alpha" not in dists and "bregzoo" in dists
    assert c2 == 0 and "alpha" not in {r["name"] for r in json.loads(divs)} and "reverse-kl" in divs
    assert c3 == 2 and "No such command 'alpha-sweep'" in sweep
    assert c4 == 2 and "error: no divergence matches 'alpha*'" in missing

    monkeypatch.setenv("BREGZOO_DISABLE_PLUGINS", "bregzoo-alpha")
    reset_host()
    try:
        assert "alpha" not in list_divergences() and "rulsif" not in list_ratio_estimators()
        assert "reverse-kl" in list_divergences()
        with pytest.raises(UnknownNameError, match="Is the plugin that provides it installed"):
            create_divergence("alpha:alpha=0.5")
    finally:
        monkeypatch.delenv("BREGZOO_DISABLE_PLUGINS")
        reset_host()


def test_disable_one_entry_point_by_plugin_name(monkeypatch):
    monkeypatch.setenv("BREGZOO_DISABLE_PLUGINS", "bregzoo-alpha.rulsif")
    reset_host()
    try:
        assert "alpha" in list_divergences() and "rulsif" not in list_ratio_estimators()
    finally:
        monkeypatch.delenv("BREGZOO_DISABLE_PLUGINS")
        reset_host()


def test_train_runs_with_the_plugin_divergence_and_estimator(tmp_path):
    """A short run weighted by alpha(0.5) with the RuLSIF estimator; small eval so it stays quick."""
    out = tmp_path / "run"
    res = bregzoo("train", "--divergence", "alpha:alpha=0.5", "--estimator", "rulsif:alpha=0.1", "--steps", "50",
                  "--batch-size", "64", "--set", "eval.samples=256", "--set", "eval.teacher_steps=10",
                  "--set", 'eval.final_metrics=["mode-recall","mmd"]', "--no-check", "--out", str(out), "-q")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    components = json.loads((out / "config.json").read_text())["components"]
    for kind, spec in (("divergence", "alpha:alpha=0.5"), ("estimator", "rulsif:alpha=0.1")):
        assert components[kind]["spec"] == spec
        assert (components[kind]["dist"], components[kind]["version"]) == ("bregzoo-alpha", "0.1.0")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (last,) = [r for r in rows if r["split"] == "train" and r["step"] == 50]
    assert all(math.isfinite(last[k]) for k in ("loss_est", "loss_dm", "omega_mean", "ell_ref", "ell_student"))
    assert (out / "generator.safetensors").stat().st_size > 0


@pytest.mark.slow
def test_train_exact_command_with_its_checks(tmp_path):
    """`bregzoo train --divergence alpha:alpha=0.5 --steps 50`, with the claim checks it runs first."""
    out = tmp_path / "run"
    res = bregzoo("train", "--divergence", "alpha:alpha=0.5", "--steps", "50", "--out", str(out), "-q", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    checks = json.loads((out / "config.json").read_text())["checks"]
    mine = [c for c in checks if c["subject"] == "alpha:alpha=0.5"]
    assert mine and all(c["passed"] for c in mine)


@pytest.mark.slow
def test_really_uninstalled(tmp_path):
    """Run bregzoo from a site-packages view without the package's files: no entry points, no module."""
    site = Path(sysconfig.get_paths()["purelib"])
    view = tmp_path / "site-packages"
    view.mkdir()
    hidden = []
    for entry in site.iterdir():  # the dist-info and the editable .pth that pip would remove
        if "bregzoo_alpha" in entry.name:
            hidden.append(entry.name)
        else:
            (view / entry.name).symlink_to(entry)
    assert any(h.endswith(".dist-info") for h in hidden), hidden
    launcher = (
        "import site, sys; site.addsitedir(sys.argv.pop(1)); "
        "from bregzoo_cli.app import main; sys.argv[0] = 'bregzoo'; main()"
    )

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-S", "-c", launcher, str(view), *args]
        env = {**os.environ, "BREGZOO_DISABLE_PLUGINS": ""}
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    gone = subprocess.run(
        [sys.executable, "-S", "-c", f"import site; site.addsitedir({str(view)!r}); import bregzoo_alpha"],
        capture_output=True, text=True,
    )
    assert "No module named 'bregzoo_alpha'" in gone.stderr
    res = run("plugins", "--json")
    assert res.returncode == 0, res.stderr
    assert "bregzoo-alpha" not in {p["dist"] for p in json.loads(res.stdout)}
    assert run("divergences").returncode == 0
    res = run("alpha-sweep")
    assert res.returncode == 2 and "No such command" in res.stderr
    res = run("divergences", "alpha")
    assert res.returncode == 2 and "no divergence matches 'alpha'" in res.stderr


_SUITE = """
[suite]
name = "plugin"
description = "the example plugin's divergence and estimator next to the default pair"
[leaderboard]
primary = "mmd2"
higher_is_better = ["mode_recall", "modes_covered", "precision"]
[config]
"train.steps" = 20
"train.batch_size" = 64
"train.eval_every" = 100000
"train.checkpoint_every" = 100000
"eval.samples" = 200
[[group]]
name = "2d"
tasks = ["gmm8"]
divergences = ["reverse-kl", "alpha:alpha=0.5"]
estimators = ["classifier", "rulsif:alpha=0.1"]
seeds = 1
"""


@pytest.mark.slow
def test_bench_runs_the_plugin_components(tmp_path):
    suite = tmp_path / "plugin.toml"
    suite.write_text(_SUITE)
    res = bregzoo("bench", "--suite", str(suite), "--out", str(tmp_path / "out"), "--workers", "1", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "leaderboard.json").read_text())["tasks"]["gmm8"]["rows"]
    mine = {r["name"]: r for r in rows if r["divergence"] == "alpha:alpha=0.5"}
    assert set(mine) == {"alpha:alpha=0.5 / classifier", "alpha:alpha=0.5 / rulsif:alpha=0.1"}
    for row in mine.values():
        assert (row["dist"], row["version"], row["failed_runs"]) == ("bregzoo-alpha", "0.1.0", 0)
        assert math.isfinite(row["metrics"]["mmd2"]["mean"])
