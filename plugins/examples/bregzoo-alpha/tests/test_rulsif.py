"""RuLSIF: bregzoo's estimator checks, the pointwise minimiser, the relative-ratio map, and a real fit."""

from __future__ import annotations

import math

import pytest
import torch
from bregzoo_alpha.estimators import RuLSIF

from bregzoo import BregzooError, create_ratio_estimator
from bregzoo.testing import check_estimator


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_passes_bregzoo_checks(alpha):
    assert check_estimator(RuLSIF(alpha)).passed


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.5, 0.9])
def test_pointwise_minimiser_is_the_log_ratio(alpha):
    """At a point with teacher density p and student density q, p*t_ref(l) + q*t_stu(l) is least at l = log(q/p)."""
    est = RuLSIF(alpha)
    gen = torch.Generator().manual_seed(1)
    p, q = torch.rand(50, generator=gen, dtype=torch.float64) + 0.05, torch.rand(50, generator=gen, dtype=torch.float64) + 0.05
    ell = (q / p).log().requires_grad_(True)
    t_ref, t_stu = est.loss_terms(ell, ell)
    (grad,) = torch.autograd.grad((p * t_ref + q * t_stu).sum(), ell)
    assert grad.abs().max() < 1e-12
    for shift in (-0.3, 0.3):  # and it is a minimum, not a maximum
        moved = ell.detach() + shift
        m_ref, m_stu = est.loss_terms(moved, moved)
        assert ((p * m_ref + q * m_stu) > (p * t_ref + q * t_stu).detach()).all()


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5, 0.99])
def test_relative_ratio_is_bounded_and_maps_back_to_the_log_ratio(alpha):
    est = RuLSIF(alpha)
    ell = torch.linspace(-50, 50, 1001, dtype=torch.float64)
    g = est.relative_ratio(ell)
    assert ((g > 0) & (g <= 1 / alpha)).all()
    mid = ell.abs() <= 20  # beyond this the sigmoid saturates in float64 and the way back loses digits
    r = ell[mid].exp()
    assert torch.allclose(g[mid], r / (alpha * r + 1 - alpha), rtol=1e-12)
    assert torch.allclose(est.log_ratio_from_relative(g[mid]), ell[mid], atol=1e-6)


def test_small_alpha_is_ulsif_up_to_constants():
    """alpha -> 0: (1/2) E_p[r^2] - E_q[r], bregzoo's lsif estimator, whose BR_h terms differ by constants."""
    ell = torch.linspace(-3, 3, 61, dtype=torch.float64)
    mine = RuLSIF(1e-12).loss_terms(ell, ell)  # the O(alpha r^2) difference is then below 1e-9
    lsif = create_ratio_estimator("lsif").loss_terms(ell, ell)
    for a, b in zip(mine, lsif):
        d = a - b
        assert float(d.max() - d.min()) < 1e-6


def test_fit_recovers_the_log_ratio_of_two_gaussians():
    """A quadratic log-ratio model (exact for two Gaussians) fitted by RuLSIF finds log q/p on the bulk of p."""
    gen = torch.Generator().manual_seed(0)
    x_ref = torch.randn(20000, generator=gen, dtype=torch.float64)  # teacher p = N(0, 1)
    x_stu = 0.5 + 0.8 * torch.randn(20000, generator=gen, dtype=torch.float64)  # student q = N(0.5, 0.8^2)

    def true_ell(x):
        return -((x - 0.5) ** 2) / (2 * 0.64) - math.log(0.8) + x**2 / 2

    est = create_ratio_estimator("rulsif:alpha=0.1")
    coef = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def model(x):
        return coef[0] + coef[1] * x + coef[2] * x**2

    opt = torch.optim.LBFGS([coef], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = est.loss(model(x_ref), model(x_stu))
        loss.backward()
        return loss

    opt.step(closure)
    bulk = torch.linspace(-2, 2, 201, dtype=torch.float64)
    with torch.no_grad():
        err = (est.log_ratio(model(bulk)) - true_ell(bulk)).abs().mean()
    assert err < 0.1, float(err)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "a", True])
def test_rejects_alpha_outside_zero_one(bad):
    with pytest.raises(BregzooError, match=r"rulsif: alpha must be a number in \(0, 1\)"):
        RuLSIF(bad)


def test_registered_with_its_parameter():
    est = create_ratio_estimator("rulsif:alpha=0.2")
    assert isinstance(est, RuLSIF) and est.alpha == 0.2 and est.params() == {"alpha": 0.2}
    with pytest.raises(BregzooError, match="has no parameter 'beta'"):
        create_ratio_estimator("rulsif:beta=0.2")
