"""docs/plugins.md is tested: each code block is copied from the example package, run, or regenerated.

Every fenced block carries a marker comment on the line before it:
  <!-- file: PATH -->   its non-blank lines appear, in order, in PATH (an excerpt of the real code);
  <!-- run: NAME -->    a python block, executed here (NAME selects the extra checks below);
  <!-- output: NAME --> text that this test regenerates and compares.
Console blocks need no marker; every `bregzoo COMMAND` in them must be a real command.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bregzoo import create_divergence
from bregzoo.plugins import get_host, reset_host
from bregzoo.testing import check_divergence, divergence_properties, register_inline_plugin
from bregzoo_cli.app import get_app

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
BLOCK = re.compile(r"(?:<!-- (\w+): (\S+) -->\n)?```(\w+)\n(.*?)```", re.S)


def blocks() -> list[tuple[str | None, str | None, str, str]]:
    """(marker kind, marker value, language, code) for every fenced block, in order."""
    return [m.groups() for m in BLOCK.finditer(DOC.read_text())]


def block(kind: str, name: str) -> str:
    (code,) = [c for k, v, _, c in blocks() if (k, v) == (kind, name)]
    return code


def test_every_block_is_covered():
    found = blocks()
    assert len(found) >= 12
    for kind, value, lang, code in found:
        if lang in ("console", "bash"):
            continue
        assert kind in ("file", "run", "output"), f"untested {lang} block:\n{code[:200]}"


@pytest.mark.parametrize("path", sorted({v for k, v, _, _ in blocks() if k == "file"}))
def test_file_blocks_are_excerpts_of_the_real_code(path):
    lines = (ROOT / path).read_text().splitlines()
    for kind, value, _, code in blocks():
        if (kind, value) != ("file", path):
            continue
        pos = 0
        for want in (line for line in code.splitlines() if line.strip()):
            try:
                pos = lines.index(want, pos) + 1
            except ValueError:
                pytest.fail(f"docs/plugins.md shows a line that is not in {path} (in this order):\n{want}")


def test_console_commands_exist():
    commands = set(get_app().registered_commands and [c.name for c in get_app().registered_commands])
    used = set(re.findall(r"^\$ (?:BREGZOO_\w+=\S+ )?bregzoo ([a-z-]+)", DOC.read_text(), re.M))
    assert used and used <= commands, used - commands


@pytest.fixture
def without_installed_alpha(monkeypatch):
    """The reader's situation at step 1: the example package is not installed, so the name is free."""
    monkeypatch.setenv("BREGZOO_DISABLE_PLUGINS", "bregzoo-alpha")
    reset_host()
    yield
    monkeypatch.delenv("BREGZOO_DISABLE_PLUGINS")
    reset_host()


@pytest.fixture
def guide(monkeypatch) -> types.ModuleType:
    """The first-version block as the module src/bregzoo_alpha/divergences.py of step 1."""
    module = types.ModuleType("guide_divergences")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(block("run", "first-version"), "docs/plugins.md", "exec"), module.__dict__)
    return module


def test_first_version_is_a_working_plugin(without_installed_alpha, guide):
    assert len([ln for ln in block("run", "first-version").splitlines() if ln.strip()]) <= 30
    with register_inline_plugin(guide, name="guide"):
        div = create_divergence("alpha:alpha=0.5")
        assert type(div) is guide.AlphaDivergence
        for alpha in (-3.0, -1.0, 0.0, 0.5, 1.0, 2.0):
            outcomes = divergence_properties(guide.AlphaDivergence(alpha))
            assert all(o.passed for o in outcomes), "\n".join(map(str, outcomes))
        for alpha in (-1.0, 0.5):  # and bregzoo check's claims, as the reader's own test would run them
            check_divergence(guide.AlphaDivergence(alpha))


def test_first_version_agrees_with_the_shipped_class(guide):
    from bregzoo_alpha.divergences import AlphaDivergence

    r = torch.linspace(-5, 5, 101, dtype=torch.float64).exp()
    for alpha in (-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0):
        mine, shipped = guide.AlphaDivergence(alpha), AlphaDivergence(alpha)
        torch.testing.assert_close(mine.h(r), shipped.h(r), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(mine.log_weight(r.log()), shipped.log_weight(r.log()), rtol=0, atol=1e-12)


def test_use_it_block_runs():
    exec(compile(block("run", "use-it"), "docs/plugins.md", "exec"), {})


def test_forgot_factor_output():
    from dataclasses import dataclass

    from bregzoo_alpha.divergences import AlphaDivergence

    @dataclass(frozen=True)
    class Forgot(AlphaDivergence):
        def log_weight(self, ell):
            return ell.clone()  # the (alpha - 1)/2 factor is missing

    with pytest.raises(AssertionError) as info:
        check_divergence(Forgot(0.5))
    assert f"AssertionError: {str(info.value).splitlines()[0]}" == block("output", "forgot-factor").strip()


def test_plugins_rows_output():
    infos = get_host().infos
    rows = [ln for ln in block("output", "plugins-rows").splitlines() if ln.startswith("│")]
    assert len(rows) == 3
    for row in rows:
        plugin, dist, version, hooks, provides = (c.strip() for c in row.strip("│").split("│"))
        info = infos[plugin]
        assert (dist, version, hooks) == (info.dist, info.version, ", ".join(info.hooks))
        assert provides == "; ".join(f"{k}: {', '.join(v)}" for k, v in info.provides.items())


def test_alpha_sweep_output():
    res = CliRunner().invoke(get_app(), ["alpha-sweep", "--alphas=-3,-1,0,1,2,3"])
    assert res.exit_code == 0, res.output
    got = [ln.rstrip() for ln in res.output.strip("\n").splitlines()]
    want = [ln.rstrip() for ln in block("output", "alpha-sweep").strip("\n").splitlines()]
    assert [g.strip() for g in got] == [w.strip() for w in want]


def test_check_output():
    """The claims, subjects and verdicts of the table (the errors are rounding-level and vary by machine)."""
    from bregzoo.check import run_checks

    want = []
    for line in block("output", "check").splitlines():
        if line.startswith("│"):
            claim, subject, *_, result = (c.strip() for c in line.strip("│").split("│"))
            want.append((claim, "" if subject == "—" else subject, result == "pass"))
    rows = run_checks("alpha*", estimators="rulsif", quick=True)
    assert [(r.claim, r.subject, r.passed) for r in rows] == want


def test_layout_output():
    """The tree of step 2 names files that the example package really has."""
    root = ROOT / "plugins" / "examples"
    paths, stack = [], []
    for line in block("output", "layout").splitlines():
        name = re.sub(r"^[│├└─\s]*", "", line).split("  ")[0].strip()
        depth = (len(line) - len(line.lstrip("│├└─ "))) // 4
        stack[depth:] = [name.rstrip("/")]
        paths.append("/".join(stack))
    assert "bregzoo-alpha/src/bregzoo_alpha/divergences.py" in paths
    for path in paths:
        assert (root / path).exists(), path


def test_train_config_output():
    """The provenance entry that `bregzoo train` writes to config.json (tests/test_plugin_example.py runs it)."""
    import json

    from bregzoo.config import RunConfig
    from bregzoo.train.build import provenance

    shown = json.loads("{" + block("output", "train-config") + "}")
    assert shown == {"divergence": provenance(RunConfig(divergence="alpha:alpha=0.5"))["divergence"]}


def _interval(text: str) -> tuple[float, float]:
    lo, hi = re.fullmatch(r"\[([−-]?\d+(?:\.\d+)?), ([−-]?\d+(?:\.\d+)?)\]", text).groups()
    return float(lo.replace("−", "-")), float(hi.replace("−", "-"))


def test_the_guide_states_the_ranges_and_tolerances_the_tools_use():
    """Step 3's ranges and tolerances are the constants of bregzoo.testing and bregzoo check, and the
    check table shows the range the claims really use."""
    from bregzoo import testing
    from bregzoo.bregman import WEIGHT_LOG_RATIO_LIMIT
    from bregzoo.check import weights

    step3 = DOC.read_text().split("## 3.")[1].split("## 4.")[0]
    bullets = re.split(r"\n- ", step3)

    def interval_in(start: str) -> str:
        (bullet,) = [b for b in bullets if b.startswith(start)]
        (found,) = re.findall(r"`log r ∈ (\[[^\]]+\])`", bullet)
        return found

    props = interval_in("`dh`, `d2h` and `log_weight` agree")
    finite = interval_in("`log_weight` is finite")
    claims = interval_in("then the claims of `bregzoo check`")
    assert _interval(props) == (float(testing.GRID.min()), float(testing.GRID.max()))
    assert _interval(finite) == (float(testing.WIDE.min()), float(testing.WIDE.max()))
    ell = weights.grid(quick=True)
    assert _interval(claims) == (float(ell.min()), float(ell.max())) == (-WEIGHT_LOG_RATIO_LIMIT, WEIGHT_LOG_RATIO_LIMIT)
    def sci(x: float) -> str:  # 1e-06 -> "1e-6", as the guide writes it
        return f"{x:.0e}".replace("e-0", "e-")

    assert f"to {sci(testing.DERIVATIVE_TOL)} on `log r" in step3
    assert f"to {sci(weights.WEIGHT_TOL)} in\n  float64 and {sci(weights.FLOAT32_TOL)} in float32" in step3
    shown = {line.split("│")[3].strip() for line in block("output", "check").splitlines() if "weight-" in line}
    assert shown and all(q.endswith(weights.RANGE) for q in shown), shown
