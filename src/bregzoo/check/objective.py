"""Claim 2: the Bregman objective is an f-divergence.

D_h(r || 1) = E_p[h(r) - h(1) - h'(1)(r - 1)] and E_p[r - 1] = int (q - p) = 0, so
D_h(r || 1) = E_p[h(r)] - h(1) = int p h(q/p) - h(1) = D_f(q || p) with f = h - h(1). Both sides are
computed by quadrature on the density cases; B_h(r, 1) >= 0 pointwise is checked on the way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bregzoo.bregman import objective
from bregzoo.check.cases import DensityCase, density_cases
from bregzoo.check.result import ClaimResult, Worst
from bregzoo.divergence import Divergence

OBJECTIVE_TOL = 1e-4


def objective_quadrature(div: Divergence, case: DensityCase) -> Tensor:
    """int p B_h(q/p, 1) dx: the engine's per-sample objective averaged over p by quadrature."""
    return case.grid.integrate(case.logp.exp() * objective(div, case.logq - case.logp))


def f_divergence_quadrature(div: Divergence, case: DensityCase) -> Tensor:
    """int p h(q/p) dx - h(1): the f-divergence D_f(q||p) with f = h, without the linear term."""
    r = (case.logq - case.logp).exp()
    return case.grid.integrate(case.logp.exp() * div.h(r)) - div.h(torch.ones((), dtype=r.dtype))


def objective_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """objective-fdiv: int p B_h(r,1) = int p h(r) - h(1), with B_h(r,1) >= 0 pointwise."""
    worst, negative = Worst(), []
    for case in density_cases(quick):
        worst.add(objective_quadrature(div, case), f_divergence_quadrature(div, case), case.name)
        terms = objective(div, case.logq - case.logp)
        # B_h(r, 1) >= 0 for convex h; allow rounding relative to the term's own size.
        floor = -1e-12 * (1 + terms.abs().max())
        if not bool((terms >= floor).all()):
            negative.append(f"B_h(r,1) < 0 on {case.name} (h not convex?)")
    row = worst.result("objective-fdiv", div.spec(), "E_p[B_h(r,1)] vs E_p[h(r)]-h(1) = D_f(q‖p)",
                       OBJECTIVE_TOL, detail="; ".join(negative) or "1-D quadrature")
    if negative:
        row = ClaimResult(**{**row.__dict__, "passed": False})
    return [row]


def quadrature_claim(quick: bool) -> list[ClaimResult]:
    """quadrature (global): the harness itself. Densities integrate to 1 on every grid, and the grid
    reproduces the Gaussian closed forms int q^a p^(1-a) (a = -1, 1/2, 2) and KL in both directions."""
    from bregzoo.check.cases import diffused_cases
    from bregzoo.check.quadrature import gaussian_kl, gaussian_power_integral

    worst = Worst()
    for case in density_cases(quick):
        worst.add(case.grid.integrate(case.logq.exp()), 1.0, f"∫q, {case.name}")
        worst.add(case.grid.integrate(case.logp.exp()), 1.0, f"∫p, {case.name}")
    for dim in (1, 2):
        for case in diffused_cases(dim, quick):
            worst.add(case.grid.integrate(case.logq.exp()), 1.0, f"∫q, {case.name}")
            worst.add(case.grid.integrate(case.logp.exp()), 1.0, f"∫p, {case.name}")
    gauss = density_cases(quick)[0]
    lq, lp = gauss.logq, gauss.logp
    for a in (-1.0, 0.5, 2.0):
        got = gauss.grid.integrate((a * lq + (1 - a) * lp).exp())
        worst.add(got, gaussian_power_integral(gauss.q, gauss.p, a), f"∫q^a p^(1-a), a = {a:g}")
    worst.add(gauss.grid.integrate(lq.exp() * (lq - lp)), gaussian_kl(gauss.q, gauss.p), "KL(q‖p)")
    worst.add(gauss.grid.integrate(lp.exp() * (lp - lq)), gaussian_kl(gauss.p, gauss.q), "KL(p‖q)")
    return [worst.result("quadrature", "", "∫p = 1, Gaussian closed forms by quadrature", 1e-10,
                         detail="uniform grids, rectangle rule")]
