"""bregzoo check as a plugin author meets it: exact closed forms pass even when h cancels in float64,
and weights that are wrong only far out, NaN, or overflow in float32 fail, on the whole range training sees."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from typer.testing import CliRunner

import bregzoo
from bregzoo import create_divergence, create_ratio_estimator
from bregzoo.bregman import WEIGHT_LOG_RATIO_LIMIT, generator_weight, objective
from bregzoo.check import check_divergence_claims, check_estimator_claims, precise, run_checks
from bregzoo.check.weights import grid
from bregzoo.testing import check_divergence, register_inline_plugin
from bregzoo_cli.app import get_app

LOG8 = math.log(8.0)


@dataclass(frozen=True)
class Triangular(bregzoo.Divergence):
    """Triangular discrimination, h written the way that cancels: h'' by float64 autograd is wrong past l ~ 10."""

    name = "triangular-test"
    summary = "triangular discrimination"
    h_formula = "(r - 1)^2 / (r + 1)"
    weight_formula = "8r/(r + 1)^3"
    named_divergence = "Δ(q,p) = ∫(q−p)²/(q+p)"

    def h(self, r: Tensor) -> Tensor:
        return (r - 1) * ((r - 1) / (r + 1))

    def dh(self, r: Tensor) -> Tensor:
        return (r - 1) * (r + 3) / (r + 1).square()

    def d2h(self, r: Tensor) -> Tensor:
        return 8 / (r + 1).pow(3)

    def log_weight(self, ell: Tensor) -> Tensor:
        return LOG8 + ell - 3 * F.softplus(ell)

    def named_integrand(self, log_q: Tensor, log_p: Tensor) -> Tensor:
        # (q-p)^2/(q+p) = (q+p) tanh^2((log q - log p)/2): no 0/0 where both densities underflow
        return torch.logaddexp(log_q, log_p).exp() * torch.tanh((log_q - log_p) / 2).square()


class _Plugin:
    @bregzoo.hookimpl
    def register_divergences(self):
        return [Triangular]


def _failed(rows) -> dict[str, str]:
    return {r.claim: r.detail for r in rows if not r.passed}


def test_an_exact_closed_form_with_a_cancelling_h_passes_check():
    # The premise: float64 autograd of this h really is wrong where the check now looks.
    from bregzoo.check.weights import autograd_derivatives

    ell = torch.tensor([18.24], dtype=torch.float64)
    _, d2 = autograd_derivatives(Triangular(), ell)
    assert abs(float(d2 / Triangular().d2h(ell.exp())) - 1) > 1e-4
    with register_inline_plugin(_Plugin(), name="triangular-plugin"):
        rows = run_checks("triangular-test")
        assert not _failed(rows), _failed(rows)
        claims = {r.claim for r in rows if r.subject == "triangular-test"}
        # the plugin stated its divergence, so the named claims run for it too
        assert {"weight-autograd", "weight-float32", "derivs-autograd", "named-divergence", "named-gradient"} <= claims
        check_divergence(create_divergence("triangular-test"))  # bregzoo.testing agrees
        result = CliRunner().invoke(get_app(), ["check", "-d", "triangular-test", "--quick"])
        assert result.exit_code == 0, result.output


def test_a_wrongly_stated_divergence_fails_named_divergence():
    @dataclass(frozen=True)
    class Misnamed(Triangular):
        def named_integrand(self, log_q, log_p):
            return 2 * super().named_integrand(log_q, log_p)  # says 2Δ: wrong

    failed = _failed(check_divergence_claims(Misnamed(), quick=True, claims="named-*"))
    assert set(failed) == {"named-divergence", "named-gradient"}


@pytest.mark.parametrize("where, expect", [
    # wrong by 1% only beyond |l| = 25: inside what training can feed it, so it must fail
    (lambda ell: torch.where(ell.abs() > 25, torch.full_like(ell, 0.01), torch.zeros_like(ell)), "weight-autograd"),
    # NaN beyond l = 30
    (lambda ell: torch.where(ell > 30, torch.full_like(ell, math.nan), torch.zeros_like(ell)), "weight-autograd"),
])
def test_a_weight_wrong_only_far_out_fails(where, expect):
    @dataclass(frozen=True)
    class FarOut(Triangular):
        def log_weight(self, ell):
            return super().log_weight(ell) + where(ell)

    failed = _failed(check_divergence_claims(FarOut(), quick=True, claims="weight-*"))
    assert expect in failed and "worst at l = " in failed[expect]
    at = float(failed[expect].split("worst at l = ")[1].split(":")[0])
    assert abs(at) > 25


def test_a_naive_float32_weight_fails_only_the_float32_claim():
    @dataclass(frozen=True)
    class Naive(Triangular):
        def log_weight(self, ell):
            r = ell.exp()
            return torch.log(8 * r / (1 + r).pow(3))  # (1 + r)^3 overflows float32 past l = 29.6

    failed = _failed(check_divergence_claims(Naive(), quick=True, claims="weight-*"))
    assert set(failed) == {"weight-float32"}
    assert "float32" in failed["weight-float32"] and "log space" in failed["weight-float32"]
    # and the pre-training check stops on it
    from bregzoo.train.checks import require_passed, run_claim_checks

    rows = run_claim_checks(Naive(), create_ratio_estimator("classifier"))
    with pytest.raises(bregzoo.BregzooError, match="weight-float32"):
        require_passed(rows, force=False)


def test_the_h_only_fallback_is_blamed_where_h_cancels_and_told_what_to_do():
    @dataclass(frozen=True)
    class HOnly(bregzoo.Divergence):
        name = "h-only-test"

        def h(self, r):
            return (r - 1) * ((r - 1) / (r + 1))

    failed = _failed(check_divergence_claims(HOnly(), quick=True, claims="weight-autograd"))
    assert "closed form" in failed["weight-autograd"]  # the advice: give log_weight in closed form


def test_unverifiable_points_fail_and_the_worst_is_never_among_them():
    """A reference that cannot run h falls back to float64 autograd, which is noise past l ~ 10 for this
    h: those points are not verified, so the claim fails saying so, and the worst it reports is elsewhere."""
    import re

    @dataclass(frozen=True)
    class Unrunnable(Triangular):
        def h(self, r):
            if isinstance(r, precise.Jet):
                raise precise.Unsupported("test: pretend h uses an exotic op")
            return super().h(r)

    (row,) = check_divergence_claims(Unrunnable(), quick=True, claims="weight-autograd")
    assert not row.passed and "float64 autograd" in row.detail and "could not verify" in row.detail
    assert "not necessarily your formula" in row.detail
    at = float(row.detail.split("worst at l = ")[1].split(":")[0])
    unverified = row.detail.split("could not verify")[1].split(": the reference")[0]
    spans = [(float(a), float(b)) for a, b in re.findall(r"\[(-?[\d.]+), (-?[\d.]+)\]", unverified)]
    assert spans and not any(a <= at <= b for a, b in spans), (at, spans)
    assert row.rel_err < 1e-6  # where it could look, the exact closed form is right


def test_the_weight_range_covers_everything_training_feeds_log_weight():
    ell = grid(quick=True)
    assert float(ell.min()) == -WEIGHT_LOG_RATIO_LIMIT and float(ell.max()) == WEIGHT_LOG_RATIO_LIMIT
    seen = []

    @dataclass(frozen=True)
    class Spy(Triangular):
        def log_weight(self, ell):
            seen.append(ell.clone())
            return super().log_weight(ell)

    generator_weight(Spy(), torch.tensor([-1e4, -60.0, 0.0, 60.0, 1e4]))
    generator_weight(Spy(), torch.tensor([-1e4, 1e4]), clamp=100.0)
    assert all(float(s.abs().max()) <= WEIGHT_LOG_RATIO_LIMIT for s in seen)
    assert torch.equal(generator_weight(Spy(), torch.tensor([3.0]), clamp=2.0), generator_weight(Spy(), torch.tensor([2.0])))


def test_neyman_objective_is_finite_in_float32_at_the_limit():
    ell = torch.tensor([-WEIGHT_LOG_RATIO_LIMIT, 0.0, WEIGHT_LOG_RATIO_LIMIT])
    got = objective(create_divergence("neyman"), ell)
    want = objective(create_divergence("neyman"), ell.double())
    assert torch.isfinite(got).all() and torch.allclose(got.double(), want, rtol=1e-6)


# -- the high-precision reference itself -------------------------------------------------------------------
_FORMS = {  # h written two ways: (a form that cancels in float64, an exact h'' to compare with)
    "triangular": (lambda r: (r - 1) * ((r - 1) / (r + 1)), lambda r: 8 / (r + 1) ** 3),
    "neyman": (lambda r: (r - 1).square() / r, lambda r: 2 / r**3),
    "bkl": (lambda r: -torch.special.xlog1py(r, r.reciprocal()) - torch.log1p(r), lambda r: 1 / (r * (1 + r))),
    "power": (lambda r: torch.where(r > 1, r * (r.pow(0.5) - 1) / 0.5, r * torch.expm1(0.5 * r.log()) / 0.5),
              lambda r: 1.5 * r**-0.5),
}


@settings(max_examples=25, deadline=None)
@given(ell=st.floats(-WEIGHT_LOG_RATIO_LIMIT, WEIGHT_LOG_RATIO_LIMIT), form=st.sampled_from(sorted(_FORMS)))
def test_high_precision_h2_is_exact_where_float64_is_not(ell, form):
    h, d2 = _FORMS[form]
    ref = precise.reference(h, torch.tensor([ell], dtype=torch.float64))
    r = torch.tensor([ell], dtype=torch.float64).exp()
    assert float(ref["err_w"]) < 1e-20
    assert float(ref["d2"] / d2(r)) == pytest.approx(1.0, rel=1e-13, abs=0)


@pytest.mark.parametrize("bias", [0.09, 0.03, -0.03])
def test_the_estimator_training_claim_catches_a_small_bias(bias):
    from bregzoo.estimator import BregmanRatioEstimator

    class Biased(BregmanRatioEstimator):
        def log_ratio(self, out):
            return out + bias

    (row,) = check_estimator_claims(Biased(create_divergence("bkl"), name="biased"), quick=True,
                                    claims="estimator-training")
    assert not row.passed and row.abs_err == pytest.approx(abs(bias), abs=0.005)
    (good,) = check_estimator_claims(BregmanRatioEstimator(create_divergence("bkl")), quick=True,
                                     claims="estimator-training")
    assert good.passed and good.abs_err < row.abs_err / 10


def test_the_pre_training_check_names_every_failed_claim_and_exits_1_like_check(tmp_path, monkeypatch):
    from bregzoo.errors import ClaimsFailedError
    from bregzoo.train.checks import require_passed

    rows = [{"claim": f"claim-{i}", "subject": "x" if i < 3 else "est", "passed": False, "detail": "d" * 500}
            for i in range(5)] + [{"claim": "fine", "subject": "x", "passed": True}]
    with pytest.raises(ClaimsFailedError) as info:
        require_passed(rows, force=False)
    text = str(info.value)
    assert text.startswith("5 unification claim(s) failed")
    assert all(f"claim-{i}" in text for i in range(5)) and "fine" not in text
    assert len(text) <= 600  # the CLI's one-line limit: nothing is cut off
    require_passed(rows, force=True)

    import bregzoo.train.loop as loop

    monkeypatch.setattr(loop, "run_claim_checks", lambda div, est: rows)
    result = CliRunner().invoke(get_app(), ["train", "--steps", "1", "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 1, result.output
    assert "claim-4" in result.output and len(result.output.strip().splitlines()) == 1


@settings(max_examples=12, deadline=None)
@given(at=st.floats(-WEIGHT_LOG_RATIO_LIMIT, WEIGHT_LOG_RATIO_LIMIT), factor=st.sampled_from([1.01, 0.99, math.nan]))
def test_a_weight_wrong_anywhere_in_the_range_fails(at, factor):
    """A closed form that is off by 1% (or NaN) on any window of width 0.6 in l fails weight-autograd,
    and the reported worst lies in that window: the quick grid (spacing 0.25) leaves no gap."""

    @dataclass(frozen=True)
    class Window(Triangular):
        def log_weight(self, ell):
            inside = (ell - at).abs() <= 0.3
            return super().log_weight(ell) + torch.where(inside, math.log(factor) if factor == factor else math.nan, 0.0)

    (row,) = check_divergence_claims(Window(), quick=True, claims="weight-autograd")
    assert not row.passed
    worst = float(row.detail.split("worst at l = ")[1].split(":")[0])
    assert abs(worst - at) <= 0.3 + 0.01


def test_jet_comparisons_and_where_select_like_tensors():
    r = precise.Jet.variable([precise.mpmath.mpf(x) for x in (0.5, 1.0, 2.0)])
    assert (r == 1).tolist() == [False, True, False] and (r != 1).tolist() == [True, False, True]
    picked = torch.where(r > 1, r.square(), -r)
    assert [float(v) for v in picked.v] == [-0.5, -1.0, 4.0] and [float(d) for d in picked.d1] == [-1.0, -1.0, 4.0]
    with pytest.raises(precise.Unsupported, match="i0"):
        precise.derivatives(lambda x: torch.special.i0(x), torch.zeros(2, dtype=torch.float64), 128)
