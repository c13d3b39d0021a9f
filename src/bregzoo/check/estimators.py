"""Claim 5: BR_h ratio matching reproduces the named estimators, and any estimator learns log(q/p).

BR_h(r) = E_p[h'(r) r - h(r)] - E_q[h'(r)] (Sugiyama, Suzuki & Kanamori 2012). With l = log r:
  bkl:     h' r - h = log(1+r) = softplus(l),  -h' = log((1+r)/r) = softplus(-l)  -> logistic regression;
  squared: h' r - h = r^2/2,                   -h' = -r                          -> uLSIF;
  lsif:    h' r - h = (r^2 - 1)/2,             -h' = 1 - r                       -> uLSIF + 1/2;
  ukl:     h' r - h = r,                       -h' = -l                          -> unnormalised KLIEP.
Training: reference samples from p = N(0, 1) and student samples from q = N(0.5, 0.8^2), where the true
log-ratio is a quadratic in x, so the model l(x) = a x^2 + b x + c can represent it exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bregzoo.bregman import ratio_matching_loss
from bregzoo.check.dictionary import BR_NAMED, ESTIMATOR_NAMED, NamedObjective
from bregzoo.check.quadrature import GaussMix
from bregzoo.check.result import ClaimResult, Worst
from bregzoo.check.weights import autograd_derivatives
from bregzoo.divergence import Divergence
from bregzoo.estimator import BregmanRatioEstimator, RatioEstimator

LOSS_TOL = 1e-10
MAE_TOL = 0.02  # built-in estimators reach <= 4e-4 here; BR_h with tail-heavy h (kl, jeffreys) ~1e-2
_P = GaussMix.make([0.0], [1.0])
_Q_MEAN, _Q_STD = 0.5, 0.8
_Q = GaussMix.make([_Q_MEAN], [_Q_STD])


def _true_coefficients() -> tuple[float, float, float]:
    """log N(x; m, v) - log N(x; 0, 1) = a x^2 + b x + c."""
    m, v = _Q_MEAN, _Q_STD**2
    return 0.5 - 0.5 / v, m / v, -0.5 * m * m / v - 0.5 * math.log(v)


def _random_logratios(quick: bool) -> list[tuple[Tensor, Tensor]]:
    """Fixed-seed batches of l at reference and at student samples, l ~ N(0, 2^2)."""
    gen = torch.Generator().manual_seed(0)
    return [(2 * torch.randn(1000, generator=gen, dtype=torch.float64),
             2 * torch.randn(1000, generator=gen, dtype=torch.float64)) for _ in range(2 if quick else 6)]


def _compare_named(loss_fn, named: NamedObjective, quick: bool) -> Worst:
    worst = Worst()
    for i, (lp, lq) in enumerate(_random_logratios(quick)):
        worst.add(loss_fn(lp, lq) - named.offset, named.loss(lp, lq), f"batch {i}")
    return worst


def br_named_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """estimator-loss (divergence side): BR_h from the engine equals the named estimator's loss."""
    named = BR_NAMED.get(div.name)
    if named is None:
        return []

    def loss(lp, lq):
        ref, stu = ratio_matching_loss(div, lp, lq)
        return ref.mean() + stu.mean()

    worst = _compare_named(loss, named, quick)
    return [worst.result("estimator-loss", div.spec(), f"BR_h = {_title(named)}", LOSS_TOL, detail=named.formula)]


def _title(named: NamedObjective) -> str:
    return named.title + (f" + {named.offset:g}" if named.offset else "")


def named_estimator_claim(est: RatioEstimator, quick: bool) -> list[ClaimResult]:
    """estimator-loss (estimator side): a built-in estimator's loss equals its textbook objective."""
    named = ESTIMATOR_NAMED.get(est.name)
    if named is None:
        return []
    worst = _compare_named(est.loss, named, quick)
    return [worst.result("estimator-loss", est.name, f"loss = {_title(named)}", LOSS_TOL, detail=named.formula)]


def bregman_estimator_claim(est: RatioEstimator, quick: bool) -> list[ClaimResult]:
    """estimator-bregman: a BR_h estimator's loss equals BR_h written with h' from autograd of h."""
    if not isinstance(est, BregmanRatioEstimator):
        return []
    worst = Worst()
    for i, (lp, lq) in enumerate(_random_logratios(quick)):
        d1p, _ = autograd_derivatives(est.h, lp)
        d1q, _ = autograd_derivatives(est.h, lq)
        rp = lp.exp()
        want = (d1p * rp - est.h.h(rp)).mean() - d1q.mean()
        worst.add(est.loss(lp, lq), want, f"batch {i}")
    return [worst.result("estimator-bregman", est.name, "loss = E_p[h'(r)r - h(r)] - E_q[h'(r)]", LOSS_TOL,
                         detail=f"h = {est.h.spec()}")]


def _quantiles(n: int) -> Tensor:
    """The n quantiles of N(0, 1) at (i - 1/2)/n, as a column: a sample without sampling noise.

    The mean over them is the midpoint rule in probability space, so a loss's sample mean matches
    its expectation to ~1/n instead of ~1/sqrt(n), and a correct estimator fits to ~1e-3 or better:
    a bias of a few hundredths is then a real error, not bad luck.
    """
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return (math.sqrt(2.0) * torch.special.erfinv(2 * u - 1))[:, None]


def training_claim(est: RatioEstimator, quick: bool) -> list[ClaimResult]:
    """estimator-training: fitting l(x) = a x^2 + b x + c with the loss recovers log(q/p)."""
    n = 4000 if quick else 20000
    x_ref = _quantiles(n)
    x_stu = _Q_MEAN + _Q_STD * _quantiles(n)
    coef = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def model(x: Tensor) -> Tensor:
        x = x[:, 0]
        return coef[0] * x.square() + coef[1] * x + coef[2]

    opt = torch.optim.LBFGS([coef], lr=1.0, max_iter=100 if quick else 300, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = est.loss(model(x_ref), model(x_stu))
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    # Bulk of the reference density: its central 95%, weighted by p.
    x = torch.linspace(-1.96, 1.96, 393, dtype=torch.float64)[:, None]
    with torch.no_grad():
        got = est.log_ratio(model(x)).double()
    true = _Q.log_prob(x) - _P.log_prob(x)
    w = _P.log_prob(x).exp()
    mae = float((w * (got - true).abs()).sum() / w.sum())
    mae = mae if math.isfinite(mae) else math.inf
    rel = mae / float((w * true.abs()).sum() / w.sum())
    a, b, c = coef.detach().tolist()
    ta, tb, tc = _true_coefficients()
    return [ClaimResult("estimator-training", est.name, "MAE of learnt l vs log(q/p) on p's central 95%",
                        mae, rel, MAE_TOL, mae < MAE_TOL,
                        f"p = N(0,1), q = N(0.5,0.8²), n = {n} each; l = {a:.3f}x² + {b:.3f}x + {c:.3f} "
                        f"(true {ta:.3f}x² + {tb:.3f}x + {tc:.3f})")]
