"""Claim 4: the named special cases of the dictionary, each checked against its own definition.

These claims run only for divergences whose name has a row in ``dictionary``, except that
named-divergence and named-gradient also run for a plugin that states its divergence through
``Divergence.named_integrand``; partners of a pair
(ukl for reverse-kl, ...) are looked up in the registry and the claim is skipped if one is missing.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from bregzoo.check.cases import density_cases, diffused_cases
from bregzoo.check.dictionary import AFFINE_PAIRS, DMD, ENTRIES, FDISTILL, Entry
from bregzoo.check.gradient import GRADIENT_TOL, autograd_gradient, dibregman_gradient
from bregzoo.check.objective import OBJECTIVE_TOL, objective_quadrature
from bregzoo.check.result import ClaimResult, Worst
from bregzoo.check.weights import RANGE, autograd_derivatives, grid
from bregzoo.divergence import Divergence

EXACT_TOL = 1e-9
WEIGHT_TOL = 1e-6
_ELL = grid(quick=True)


def _registered(name: str) -> Divergence | None:
    """The registered divergence ``name`` with default parameters, or None if not installed."""
    from bregzoo.api import create_divergence, list_divergences

    return create_divergence(name) if name in list_divergences(name) else None


def _entry(div: Divergence) -> Entry | None:
    """The dictionary row for ``div``'s name, else the divergence the plugin itself states, else None."""
    entry = ENTRIES.get(div.name)
    if entry is not None or type(div).named_integrand is Divergence.named_integrand:
        return entry

    def direct(d: Divergence, lq: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
        out = d.named_integrand(lq, lp)
        if out is None:
            raise ValueError("named_integrand returned None although the class overrides it")
        return out

    return Entry(div.named_divergence or "the plugin's named_integrand", "—", "—", direct)


def named_divergence_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """named-divergence: D_h equals the textbook divergence of its dictionary row (and its closed form)."""
    entry = _entry(div)
    if entry is None:
        return []
    worst = Worst()
    for case in density_cases(quick):
        got = objective_quadrature(div, case)
        worst.add(got, case.grid.integrate(entry.direct(div, case.logq, case.logp)), f"direct, {case.name}")
        if entry.closed_form is not None and case.gaussian:
            worst.add(got, entry.closed_form(div, case.q, case.p), f"closed form, {case.name}")
    forms = "direct quadrature" + (" and Gaussian closed form" if entry.closed_form else "")
    return [worst.result("named-divergence", div.spec(), f"D_h = {entry.divergence}", OBJECTIVE_TOL, detail=forms)]


def named_gradient_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """named-gradient: the Di-Bregman gradient equals autograd of the textbook divergence itself."""
    entry = _entry(div)
    if entry is None:
        return []

    def direct_value(d, case, theta):
        logq = case.student_t(theta).log_prob(case.grid.points)
        return case.grid.integrate(entry.direct(d, logq, case.logp))

    worst = Worst()
    for dim in (1, 2):
        case = diffused_cases(dim, quick)[0]
        worst.add(dibregman_gradient(div, case), autograd_gradient(div, case, direct_value), case.name)
    return [worst.result("named-gradient", div.spec(), f"E[w(r)(s_q-s_p)dx/dθ] vs ∇θ {entry.divergence}",
                         GRADIENT_TOL)]


def dmd_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """dmd-gradient: omega == 1 exactly, so the gradient is DMD's E[(s_q - s_p) dx/dtheta]."""
    if div.name not in DMD:
        return []
    worst = Worst()
    worst.add(div.log_weight(_ELL.clone()).double().exp(), torch.ones_like(_ELL), f"w(l), {RANGE}", pointwise=True)
    for dim in (1, 2):
        for case in diffused_cases(dim, quick):
            worst.add(dibregman_gradient(div, case), case.push_forward(case.score_gap), case.name)
    return [worst.result("dmd-gradient", div.spec(), "w ≡ 1; ∇ = DMD E[(s_q-s_p)dx/dθ]", EXACT_TOL)]


def affine_pair_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """affine-pair: generators that differ by an affine term give identical D, gradient and weight."""
    if div.name not in AFFINE_PAIRS:
        return []
    other_name, scale = AFFINE_PAIRS[div.name]
    other = _registered(other_name)
    if other is None:
        return []
    worst = Worst()
    for case in density_cases(quick):
        worst.add(objective_quadrature(other, case), scale * objective_quadrature(div, case), f"D, {case.name}")
    for dim in (1, 2):
        case = diffused_cases(dim, quick)[0]
        worst.add(autograd_gradient(other, case), scale * autograd_gradient(div, case), f"∇θ D, {case.name}")
        worst.add(dibregman_gradient(other, case), scale * dibregman_gradient(div, case), f"Di-Bregman ∇, {case.name}")
    w_other = other.log_weight(_ELL.clone()).double().exp()
    worst.add(w_other, scale * div.log_weight(_ELL.clone()).double().exp(), "w(l)", pointwise=True)
    times = "" if scale == 1 else f"{scale:g}·"
    return [worst.result("affine-pair", div.spec(), f"D, ∇θ D, w of {other_name} = {times}those of {div.name}",
                         EXACT_TOL)]


def power_limit_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """power-limit: power(alpha) -> reverse-kl as alpha -> 0, with the gap shrinking linearly in alpha."""
    if div.name != "power":
        return []
    base = _registered("reverse-kl")
    if base is None:
        return []
    alphas = (1e-2, 1e-3, 1e-4)
    gaps, last = [], Worst()
    case_d, case_g = density_cases(quick)[1], diffused_cases(1, quick)[0]
    want_d, want_g = objective_quadrature(base, case_d), dibregman_gradient(base, case_g)
    for a in alphas:
        small = dataclasses.replace(div, alpha=a)
        worst = Worst()
        worst.add(objective_quadrature(small, case_d), want_d, "D")
        worst.add(dibregman_gradient(small, case_g), want_g, "∇")
        worst.add(autograd_gradient(small, case_g), want_g, "autograd ∇")
        gaps.append(worst.rel_err)
        last = worst
    # First-order convergence: each tenfold smaller alpha shrinks the gap about tenfold.
    linear = all(5 < g0 / max(g1, 1e-300) < 20 for g0, g1 in zip(gaps, gaps[1:]))
    detail = "rel gap at α = " + ", ".join(f"{a:g}: {g:.1e}" for a, g in zip(alphas, gaps))
    row = last.result("power-limit", div.spec(), "D, ∇ of power(α=1e-4) vs reverse-kl", 1e-3, detail=detail)
    if not linear:
        row = dataclasses.replace(row, passed=False, detail=row.detail + "; gap not O(α)")
    return [row]


def _c(w) -> str:
    return "" if w.factor == 1 else f"{w.factor:g}·"


def fdistill_weight_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """fdistill-weight: omega(r) = c u^2 f''(u) at u = 1/r, for each f-distill weight mapped to ``div``.

    h(r) = c r f(1/r) gives h''(r) = c f''(1/r) / r^3, so omega = r h''(r) = c u^2 f''(u), u = 1/r.
    The f-distill weight is also re-derived from its f by autograd, which checks the transcription.
    """
    out = []
    ell = torch.linspace(-10, 10, 201, dtype=torch.float64)
    u = (-ell).exp()
    for w in (w for w in FDISTILL if w.ours == div.name):
        worst = Worst()
        _, f2 = autograd_derivatives(_AsGenerator(w.f), -ell)  # f''(u) at u = exp(-l)
        worst.add(w.weight(u), u.square() * f2, "f-distill's w(u) vs u²f''(u)", pointwise=True)
        worst.add(div.log_weight(ell.clone()).double().exp(), w.factor * w.weight(u), "ours vs c·w(1/r)", pointwise=True)
        out.append(worst.result(
            "fdistill-weight", div.spec(), f"w(r) = {_c(w)}{w.weight_formula} at u = 1/r ('{w.name}')", WEIGHT_TOL,
            detail=f"f-distill '{w.name}': f(u) = {w.f_formula}, w(u) = u²f''(u) = {w.weight_formula}, l∈[-10,10]"))
    return out


def fdistill_objective_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """fdistill-objective: D_h = c D_f(p||q) = c int q f(p/q): our h is f-distill's f in perspective."""
    out = []
    for w in (w for w in FDISTILL if w.ours == div.name):
        worst = Worst()
        for case in density_cases(quick):
            d_f = case.grid.integrate(case.logq.exp() * w.f((case.logp - case.logq).exp()))
            worst.add(objective_quadrature(div, case), w.factor * d_f, case.name)
        out.append(worst.result("fdistill-objective", div.spec(), f"D_h = {_c(w)}∫q f(p/q), f-distill '{w.name}'",
                                OBJECTIVE_TOL, detail="h(r) = c r f(1/r) + affine: the perspective of f"))
    return out


@dataclasses.dataclass(frozen=True)
class _AsGenerator(Divergence):
    """A plain function f(u) dressed as a Divergence, so the autograd reference can differentiate it."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    name = "f-distill-f"

    def h(self, r):
        return self.fn(r)

