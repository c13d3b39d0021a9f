"""bregzoo check: the claims pass for the zoo, fail for a broken divergence, and the CLI reports both."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from typer.testing import CliRunner

import bregzoo
from bregzoo import create_divergence, create_ratio_estimator, list_divergences, list_ratio_estimators
from bregzoo.check import ClaimResult, check_divergence_claims, check_estimator_claims, list_claims, run_checks
from bregzoo.check.cases import density_cases, diffused_cases
from bregzoo.check.dictionary import ENTRIES, FDISTILL, dictionary_markdown
from bregzoo.check.gradient import autograd_gradient, dibregman_gradient, discriminator_field
from bregzoo.check.quadrature import GaussMix, grid_covering, gaussian_kl, gaussian_power_integral
from bregzoo.estimator import BregmanRatioEstimator
from bregzoo.plugins import get_host
from bregzoo_cli.app import get_app

DOC = Path(__file__).resolve().parents[1] / "docs" / "unification.md"


def _failures(rows: list[ClaimResult]) -> list[str]:
    return [f"{r.claim} [{r.subject}] rel={r.rel_err:.2e} tol={r.tol:g}: {r.detail}" for r in rows if not r.passed]


# -- a deliberately broken divergence, injected as a plugin -------------------------------------------------

@dataclass(frozen=True)
class BrokenDiv(bregzoo.Divergence):
    """h = r log r (reverse-kl) but a wrong closed-form weight: log w = l instead of 0."""

    name = "broken-test"
    summary = "test double with a wrong log_weight"

    def h(self, r: Tensor) -> Tensor:
        return torch.special.xlogy(r, r)

    def log_weight(self, ell: Tensor) -> Tensor:
        return ell.clone()


class _BrokenPlugin:
    @bregzoo.hookimpl
    def register_divergences(self):
        return [BrokenDiv]


@pytest.fixture
def broken_plugin():
    host = get_host()
    host.register(_BrokenPlugin(), name="broken-test")
    yield "broken-test"
    host.unregister("broken-test")


# -- the zoo passes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_divergences())
def test_quick_divergence_claims_pass(name):
    """Every registered divergence (third-party ones included) passes every quick claim."""
    rows = check_divergence_claims(create_divergence(name), quick=True)
    assert {"weight-autograd", "objective-fdiv", "gradient-1d", "gradient-2d", "discriminator-form"} <= {
        r.claim for r in rows}
    assert not _failures(rows)


@pytest.mark.parametrize("name", list_ratio_estimators())
def test_quick_estimator_claims_pass(name):
    rows = check_estimator_claims(create_ratio_estimator(name), quick=True)
    assert "estimator-training" in {r.claim for r in rows}
    assert not _failures(rows)


def test_quick_run_covers_every_claim():
    """No claim silently produces nothing: the quick run has a row for each claim name."""
    rows = run_checks(quick=True)
    assert not _failures(rows)
    assert {r.claim for r in rows} == set(list_claims())
    subjects = {r.subject for r in rows}
    assert {"reverse-kl", "ukl", "kl", "lsif", "squared", "bkl", "js", "hellinger", "jeffreys"} <= subjects
    assert {"classifier", "lsif", "kliep"} <= subjects


@pytest.mark.slow
def test_full_run_passes():
    rows = run_checks()
    assert not _failures(rows)


# -- a wrong weight fails ----------------------------------------------------------------------------------

def test_broken_weight_fails(broken_plugin):
    rows = run_checks(broken_plugin, quick=True)
    by_claim = {r.claim: r for r in rows if r.subject == broken_plugin}
    for claim in ("weight-autograd", "gradient-1d", "gradient-2d", "discriminator-form"):
        assert not by_claim[claim].passed, claim
    assert by_claim["weight-autograd"].rel_err > 1.0  # off by e^l - 1 at l = 20
    # h itself is a fine generator, so the claim about h alone still holds.
    assert by_claim["objective-fdiv"].passed


def test_unregistered_instance_checked():
    rows = check_divergence_claims(BrokenDiv(), quick=True, claims="weight-autograd")
    assert [r.claim for r in rows] == ["weight-autograd"] and not rows[0].passed


def test_raising_plugin_gives_failed_rows_not_a_crash():
    @dataclass(frozen=True)
    class Raises(bregzoo.Divergence):
        name = "raises"

        def h(self, r: Tensor) -> Tensor:
            raise RuntimeError("boom")

    rows = check_divergence_claims(Raises(), quick=True)
    assert rows and all(not r.passed for r in rows)
    assert all("boom" in r.detail for r in rows) and all(math.isinf(r.rel_err) for r in rows)


def test_gradient_claim_detects_a_wrong_sign():
    """The gradient comparison is not vacuous: flipping the field's sign gives relative error 2."""
    case = diffused_cases(1, quick=True)[0]
    div = create_divergence("kl")
    good, true = dibregman_gradient(div, case), autograd_gradient(div, case)
    assert torch.allclose(good, true, rtol=1e-10, atol=0)
    assert float((-good - true).norm() / true.norm()) == pytest.approx(2.0)


def test_discriminator_form_needs_the_minus_sign():
    """With r = (1-D)/D, grad h'(r) = -h''(r) grad D / D^2: the unsigned form is the negative gradient."""
    div = create_divergence("jeffreys")
    case = diffused_cases(2, quick=True)[0]
    field = discriminator_field(div, case)
    true = autograd_gradient(div, case)
    assert torch.allclose(case.push_forward(field), true, rtol=1e-9, atol=0)
    assert torch.allclose(case.push_forward(-field), -true, rtol=1e-9, atol=0)


def test_training_claim_fails_for_a_sign_flipped_estimator():
    class Flipped(BregmanRatioEstimator):
        def log_ratio(self, out: Tensor) -> Tensor:
            return -out

    rows = check_estimator_claims(Flipped(create_divergence("bkl"), name="flipped"), quick=True,
                                  claims="estimator-training")
    assert len(rows) == 1 and not rows[0].passed and rows[0].abs_err > 0.1


def test_user_errors():
    with pytest.raises(bregzoo.BregzooError, match="no divergence matches"):
        run_checks("no-such-*", quick=True)
    with pytest.raises(bregzoo.BregzooError, match="no claim matches"):
        run_checks(claims="nonsense", quick=True)


def test_spec_with_parameters():
    rows = run_checks("power:alpha=2", claims="gradient-*,weight-*", quick=True)
    assert [r.subject for r in rows] == ["power:alpha=2"] * 4 and not _failures(rows)


# -- the harness -------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(
    mq=st.floats(-1.5, 1.5), sq=st.floats(0.5, 1.5), sp=st.floats(0.5, 1.5),
    a=st.sampled_from([-1.0, -0.5, 0.5, 1.5, 2.0]),
)
def test_gaussian_closed_forms_match_quadrature(mq, sq, sp, a):
    q, p = GaussMix.make([mq], [sq]), GaussMix.make([0.0], [sp])
    lam = a / sq**2 + (1 - a) / sp**2
    if lam <= 0:  # the integrand does not decay: the closed form must say so
        assert gaussian_power_integral(q, p, a) == math.inf
        return
    if lam < 0.2:  # finite but too wide for this fixed grid
        return
    # The integrand q^a p^(1-a) is itself a Gaussian, of precision lam, centred where neither q nor p is when
    # a < 0 or a > 1 (mq=1.5, sq=0.66, sp=0.88, a=-1: at -11.9, 4 of its stds past a grid around q and p only).
    integrand = GaussMix.make([a * mq / sq**2 / lam], [lam**-0.5])
    grid = grid_covering([q, p, integrand], step=0.05, width=12.0)
    lq, lp = q.log_prob(grid.points), p.log_prob(grid.points)
    got = float(grid.integrate((a * lq + (1 - a) * lp).exp()))
    assert got == pytest.approx(gaussian_power_integral(q, p, a), rel=1e-9)
    assert float(grid.integrate(lq.exp() * (lq - lp))) == pytest.approx(gaussian_kl(q, p), rel=1e-9, abs=1e-14)


def test_cases_keep_every_divergence_finite():
    """Student variance below every teacher component's and above half the widest (DESIGN.md section 4)."""
    for case in density_cases():
        vq, vp = float(case.q.variances.max()), case.p.variances
        assert vq < float(vp.max()) and vq > float(vp.max()) / 2
    for dim in (1, 2):
        for case in diffused_cases(dim):
            vq = float(case.student_t(case.theta0()).variances[0])
            vp = case.teacher_t.variances
            assert vq < float(vp.min()) and vq > float(vp.max()) / 2


# -- the dictionary and its document -----------------------------------------------------------------------

def _builtin_divergences() -> list[str]:
    host = get_host()
    return [n for n in list_divergences() if host.provider_of("divergence", n).dist == "bregzoo"]


def test_every_builtin_has_a_dictionary_row():
    assert set(_builtin_divergences()) == set(ENTRIES)
    assert {w.ours for w in FDISTILL} <= set(ENTRIES) and len({w.name for w in FDISTILL}) == 8


def test_doc_table_matches_the_code():
    """docs/unification.md holds exactly the table generated from the dictionary and the registry."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- dictionary:start -->\n(.*?)<!-- dictionary:end -->", text, re.S)
    assert match, "docs/unification.md lost its dictionary markers"
    assert match.group(1) == dictionary_markdown(), (
        "the dictionary table is stale: regenerate it with `bregzoo check --dictionary`")


def test_doc_names_every_claim():
    text = DOC.read_text(encoding="utf-8")
    missing = [c for c in list_claims() if f"`{c}`" not in text]
    assert not missing, f"docs/unification.md does not describe {missing}"


# -- CLI ---------------------------------------------------------------------------------------------------

def test_cli_passes_and_prints_the_table():
    result = CliRunner().invoke(get_app(), ["check", "--divergence", "kl", "--quick"])
    assert result.exit_code == 0, result.output
    assert "gradient-2d" in result.output and "pass" in result.output and "FAIL" not in result.output


def test_cli_fails_for_a_broken_divergence(broken_plugin):
    result = CliRunner().invoke(get_app(), ["check", "--divergence", "broken-*", "--quick"])
    assert result.exit_code == 1, result.output
    assert "FAIL weight-autograd (broken-test)" in result.output


def test_cli_json(broken_plugin):
    result = CliRunner().invoke(get_app(), ["check", "-d", "broken-test", "-c", "weight-autograd,gradient-1d", "--quick", "--json"])
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert out["passed"] is False and out["total"] == 2
    assert [r["claim"] for r in out["results"]] == ["weight-autograd", "gradient-1d"]
    assert all(isinstance(r["rel_err"], (float, str)) for r in out["results"])


def test_cli_user_error_is_one_line_exit_2():
    result = CliRunner().invoke(get_app(), ["check", "--divergence", "no-such"])
    assert result.exit_code == 2 and "no divergence matches" in result.output


def test_cli_list_and_dictionary():
    runner = CliRunner()
    listed = runner.invoke(get_app(), ["check", "--list"])
    assert listed.exit_code == 0 and all(name in listed.output for name in list_claims())
    table = runner.invoke(get_app(), ["check", "--dictionary"])
    assert table.exit_code == 0 and table.output.startswith("| name | h(r) |")
