"""Amari's alpha family: bregzoo's checks, the limits alpha -> +-1, the identities with the zoo, exact values."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from bregzoo_alpha.divergences import AlphaDivergence

from bregzoo import BregzooError, create_divergence
from bregzoo.testing import check_divergence

ELL = torch.linspace(-6, 6, 241, dtype=torch.float64)
R = ELL.exp()


@pytest.mark.parametrize("alpha", [-4.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
def test_passes_bregzoo_checks(alpha):
    report = check_divergence(AlphaDivergence(alpha))  # raises AssertionError with the first failure
    assert report.passed and len(report.outcomes) >= 7


def _mp_h(alpha: float, r: float) -> float:
    """h(r) in 50-digit arithmetic, straight from Amari's formula, as an independent reference."""
    mpmath.mp.dps = 50
    a, r = mpmath.mpf(alpha), mpmath.mpf(r)
    if a == 1:
        return float(r * mpmath.log(r) - r + 1)
    if a == -1:
        return float(r - 1 - mpmath.log(r))
    return float(4 / (1 - a**2) * ((1 - a) / 2 + (1 + a) / 2 * r - r ** ((1 + a) / 2)))


@pytest.mark.parametrize("alpha", [-4.0, -1.0, -1 + 1e-7, -1 - 1e-7, 0.0, 0.3, 1 - 1e-7, 1.0, 1 + 1e-7, 2.5])
def test_h_matches_high_precision_reference_including_near_the_limits(alpha):
    div = AlphaDivergence(alpha)
    for r in (1e-3, 0.2, 0.9, 1.0 + 1e-6, 1.7, 40.0):
        want = _mp_h(alpha, r)
        got = float(div.h(torch.tensor(r, dtype=torch.float64)))
        assert got == pytest.approx(want, rel=1e-8, abs=1e-15), (alpha, r)


def test_limits_are_reverse_kl_and_kl_up_to_affine_terms():
    # alpha = 1 is KL(q||p): h = r log r - r + 1 = reverse-kl's r log r plus an affine term.
    assert torch.allclose(AlphaDivergence(1.0).h(R), create_divergence("reverse-kl").h(R) - R + 1, rtol=1e-12)
    # alpha = -1 is KL(p||q): h = r - 1 - log r = kl's -log r plus an affine term.
    assert torch.allclose(AlphaDivergence(-1.0).h(R), create_divergence("kl").h(R) + R - 1, rtol=1e-12)
    # ... and the family is continuous there.
    for a in (1.0, -1.0):
        for eps in (1e-4, -1e-4):
            assert torch.allclose(AlphaDivergence(a + eps).h(R), AlphaDivergence(a).h(R), rtol=2e-3, atol=1e-12)


@pytest.mark.parametrize(
    ("alpha", "name", "scale"),
    [(1.0, "reverse-kl", 1.0), (-1.0, "kl", 1.0), (0.0, "hellinger", 2.0), (3.0, "lsif", 1.0), (-3.0, "neyman", 0.5)],
)
def test_named_members_equal_zoo_divergences(alpha, name, scale):
    mine, theirs = AlphaDivergence(alpha), create_divergence(name)
    # Same generator weight (so the same Di-Bregman gradient) up to the constant factor ...
    assert torch.allclose(mine.log_weight(ELL), theirs.log_weight(ELL) + math.log(scale), atol=1e-12)
    # ... and equal h'' up to that factor: h and scale * h_zoo differ by an affine function of r.
    assert torch.allclose(mine.d2h(R), scale * theirs.d2h(R), rtol=1e-12)


@pytest.mark.parametrize("alpha", [-0.5, 0.0, 0.5, 2.0, 4.0])
def test_is_a_rescaled_power_divergence_for_alpha_above_minus_one(alpha):
    power = create_divergence("power", alpha=(alpha - 1) / 2) if alpha != 1 else create_divergence("reverse-kl")
    mine = AlphaDivergence(alpha)
    assert torch.allclose(mine.d2h(R) * (1 + alpha) / 2, power.d2h(R), rtol=1e-12)


@pytest.mark.parametrize("alpha", [-3.0, -1.0, -0.2, 0.0, 0.7, 1.0, 2.0])
@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_objective_is_amari_divergence_between_gaussians(alpha, mu):
    """E_p[h(q/p)] for p = N(0,1), q = N(mu,1) equals the closed form, by Gauss-Hermite quadrature.

    integral p^(1-b) q^b = exp(-b (1-b) mu^2 / 2), so D = (1 - exp(-b(1-b) mu^2/2)) / (b(1-b)),
    with the KL limit mu^2 / 2 at b in {0, 1}.
    """
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # for the weight exp(-x^2 / 2)
    x, w = torch.from_numpy(nodes), torch.from_numpy(weights) / math.sqrt(2 * math.pi)  # E over N(0, 1)
    ell = mu * x - mu**2 / 2  # log N(x; mu, 1) - log N(x; 0, 1)
    got = float((w * AlphaDivergence(alpha).h(ell.exp())).sum())
    b = (1 + alpha) / 2
    want = mu**2 / 2 if b in (0.0, 1.0) else -math.expm1(-b * (1 - b) * mu**2 / 2) / (b * (1 - b))
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "half", True, None])
def test_rejects_bad_alpha_with_a_user_error(bad):
    with pytest.raises(BregzooError, match="alpha must be a finite real number"):
        AlphaDivergence(bad)


def test_cli_spelling_builds_the_same_object():
    div = create_divergence("alpha:alpha=0.5")
    assert div == AlphaDivergence(0.5) and div.spec() == "alpha:alpha=0.5"
    with pytest.raises(BregzooError, match="finite real number"):
        create_divergence("alpha:alpha=nan")
