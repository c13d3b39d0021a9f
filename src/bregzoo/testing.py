"""Test helpers for plugin authors: register a plugin for one test, and check a divergence or estimator.

    from bregzoo.testing import check_divergence, register_inline_plugin

    def test_my_divergence():
        report = check_divergence(MyDivergence(beta=2.0))   # raises AssertionError on the first failure
        print(report)

``check_divergence`` runs the registry-wide properties (B_h(r, 1) >= 0 with equality only at r = 1,
h'' > 0, dh / d2h / log_weight equal to high-precision autograd of h, log_weight finite for log r in
[-50, 50]) and then the
claims of ``bregzoo check`` that apply to one divergence. The pytest fixture ``bregzoo_inline_plugin``
lives in ``bregzoo.pytest_plugin``; pytest is never imported here.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor

from bregzoo.bregman import WEIGHT_LOG_RATIO_LIMIT, bregman_divergence
from bregzoo.divergence import Divergence
from bregzoo.estimator import RatioEstimator
from bregzoo.plugins import PluginInfo, get_host

# log r grid for the properties: -8, -7.9, ..., 8 without 0 (r = 1 is checked on its own). The
# claims that follow cover every l training can feed log_weight, [-WEIGHT_LOG_RATIO_LIMIT, +...].
GRID = torch.cat([torch.arange(-80, 0), torch.arange(1, 81)]).double() / 10
WIDE = torch.linspace(-WEIGHT_LOG_RATIO_LIMIT, WEIGHT_LOG_RATIO_LIMIT, 1001, dtype=torch.float64)
DERIVATIVE_TOL = 1e-6


@contextmanager
def register_inline_plugin(plugin: object, name: str = "inline-plugin") -> Iterator[PluginInfo]:
    """Register ``plugin`` (a module or an object with ``@hookimpl`` methods) until the block ends.

    Example:
        >>> from bregzoo import hookimpl, list_divergences
        >>> class Plugin:
        ...     @hookimpl
        ...     def register_divergences(self):
        ...         return [MyDivergence]
        >>> with register_inline_plugin(Plugin(), name="my-test"):
        ...     assert "my-divergence" in list_divergences()
    """
    host = get_host()  # keep this host: the block may reset the global one
    info = host.register(plugin, name=name)
    try:
        yield info
    finally:
        host.unregister(name)


@dataclass(frozen=True)
class Outcome:
    """One property or claim: what was compared, the worst error against its tolerance, and why."""

    kind: str  # "property" or "claim"
    name: str
    passed: bool
    worst: float
    tol: float
    detail: str = ""


@dataclass
class CheckReport:
    """The outcomes for one divergence or estimator; ``str(report)`` is a readable table."""

    subject: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def __str__(self) -> str:
        done = sum(o.passed for o in self.outcomes)
        lines = [f"{self.subject}: {done}/{len(self.outcomes)} passed"]
        for o in self.outcomes:
            lines.append(
                f"  {'PASS' if o.passed else 'FAIL'}  {o.kind:<8} {o.name:<52} "
                f"worst {o.worst:9.3g}  tol {o.tol:9.3g}  {o.detail}".rstrip()
            )
        return "\n".join(lines)

    def assert_passed(self) -> CheckReport:
        """Raise AssertionError naming the first failure (its counterexample) and the whole table."""
        if self.failures:
            first = self.failures[0]
            raise AssertionError(f"{self.subject}: {first.kind} failed: {first.name}: {first.detail}\n{self}")
        return self


# -- divergences -------------------------------------------------------------------------------
def _worst(err: Tensor, ell: Tensor) -> tuple[float, float]:
    """The largest error (nan counts as infinite) and the log r where it happens."""
    err = torch.where(torch.isnan(err), torch.full_like(err, math.inf), err)
    i = int(err.argmax())
    return float(err[i]), float(ell[i])


def _rel_check(name: str, got: Tensor, want: Tensor, ell: Tensor, what: str, usable: Tensor) -> Outcome:
    # Relative error, with a floor so that a value that is 0 in exact arithmetic (h'(1)) can be met.
    # A point the reference cannot settle counts as failed: it was not verified.
    err = (got - want).abs() / want.abs().clamp_min(DERIVATIVE_TOL)
    err = torch.where(usable, err, torch.full_like(err, math.inf))
    worst, at = _worst(err, ell)
    return Outcome(
        "property", name, worst <= DERIVATIVE_TOL, worst, DERIVATIVE_TOL,
        f"at log r = {at:g}: {what} = {float(got[ell == at][0]):.10g}, autograd {float(want[ell == at][0]):.10g}",
    )


def divergence_properties(div: Divergence) -> list[Outcome]:
    """The registry-wide properties of one divergence, in float64 on fixed grids of log r."""
    r, one = GRID.exp(), torch.ones((), dtype=torch.float64)
    out: list[Outcome] = []

    b = bregman_divergence(div, r, one)
    b1 = float(bregman_divergence(div, one, one))
    bad = ~(torch.isfinite(b) & (b > 0))
    at = float(GRID[bad][0]) if bad.any() else float(GRID[b.argmin()])
    out.append(Outcome(
        "property", "B_h(r,1) > 0 for r != 1, = 0 at r = 1", not bad.any() and abs(b1) <= 1e-12,
        float(bad.sum()), 0.0, f"B_h(1,1) = {b1:.3g}; smallest off 1 at log r = {at:g}: {float(b[GRID == at][0]):.3g}",
    ))

    d2 = div.d2h(r)
    bad = ~(torch.isfinite(d2) & (d2 > 0))
    at = float(GRID[bad][0]) if bad.any() else float(GRID[d2.argmin()])
    out.append(Outcome("property", "h''(r) > 0 (strictly convex)", not bad.any(), float(bad.sum()), 0.0,
                       f"smallest at log r = {at:g}: h'' = {float(d2[GRID == at][0]):.3g}"))

    # The reference: h differentiated in high precision (bregzoo.check.weights), so that an exact
    # closed form is never blamed for rounding in an h that cancels in float64.
    from bregzoo.check.weights import reference

    ref = reference(div, GRID)
    out.append(_rel_check("dh = autograd h'", div.dh(r), ref.d1, GRID, "dh", ref.usable_d1))
    out.append(_rel_check("d2h = autograd h''", d2, ref.d2, GRID, "d2h", ref.usable_w))

    err = (div.log_weight(GRID) - ref.log_omega).abs()  # log space: an absolute error is omega's relative one
    err = torch.where(ref.usable_w, err, torch.full_like(err, math.inf))
    worst, at = _worst(err, GRID)
    out.append(Outcome("property", "log_weight = log(r autograd h'')", worst <= DERIVATIVE_TOL, worst,
                       DERIVATIVE_TOL, f"at log r = {at:g}: error {worst:.3g}"))

    bad = []
    for dtype in (torch.float32, torch.float64):
        ell = WIDE.to(dtype)
        lw = div.log_weight(ell)
        if lw.shape != ell.shape or lw.dtype != dtype:
            bad.append(f"{dtype}: got shape {tuple(lw.shape)} dtype {lw.dtype}")
        elif not torch.isfinite(lw).all():
            bad.append(f"{dtype}: not finite at log r = {float(ell[~torch.isfinite(lw)][0]):g}")
    out.append(Outcome("property", "log_weight finite, same shape/dtype, log r in [-50,50]",
                       not bad, float(len(bad)), 0.0, "; ".join(bad)))

    if div.name and div.name in get_host().registries["divergence"]:
        from bregzoo.api import create_divergence

        again = create_divergence(div.spec())
        out.append(Outcome("property", "create_divergence(div.spec()) == div", again == div,
                           float(again != div), 0.0, f"{div.spec()!r} built {again!r}"))
    return out


def check_divergence(div: Divergence, quick: bool = True, claims: bool = True) -> CheckReport:
    """Run the properties above plus ``bregzoo check``'s claims for ``div``; raise on the first failure.

    Returns the ``CheckReport`` when everything passed; ``quick`` is passed to the claims.
    """
    report = CheckReport(f"divergence {div.spec()}", divergence_properties(div))
    if claims:
        from bregzoo.check import check_divergence_claims

        report.outcomes += [_claim(c) for c in check_divergence_claims(div, quick=quick)]
    return report.assert_passed()


# -- estimators --------------------------------------------------------------------------------
def estimator_properties(est: RatioEstimator, seed: int = 0) -> list[Outcome]:
    """Loss terms per sample and finite, with finite gradients, for outputs up to |out| = 50."""
    gen = torch.Generator().manual_seed(seed)
    bad = []
    for scale in (0.0, 1.0, 5.0, 20.0, 50.0):
        for dtype in (torch.float32, torch.float64):
            ref = (scale * torch.randn(64, generator=gen)).to(dtype).requires_grad_(True)
            stu = (scale * torch.randn(48, generator=gen)).to(dtype).requires_grad_(True)
            t_ref, t_stu = est.loss_terms(ref, stu)
            if t_ref.shape != ref.shape or t_stu.shape != stu.shape:
                bad.append(f"loss_terms shapes {tuple(t_ref.shape)}, {tuple(t_stu.shape)} for inputs (64,), (48,)")
                continue
            loss = est.loss(ref, stu)
            loss.backward()
            ell = est.log_ratio(ref.detach())
            for what, value in (("loss", loss), ("d loss/d out_ref", ref.grad), ("d loss/d out_student", stu.grad),
                                ("log_ratio", ell)):
                if value is not None and not torch.isfinite(value).all():
                    bad.append(f"{what} not finite for {dtype} outputs of scale {scale:g}")
    return [Outcome("property", "loss, gradients, log_ratio finite for |out| <= 50", not bad,
                    float(len(bad)), 0.0, "; ".join(bad[:3]))]


def check_estimator(est: RatioEstimator, quick: bool = True, claims: bool = True) -> CheckReport:
    """Run the estimator properties plus ``bregzoo check``'s estimator claims; raise on the first failure."""
    params = ",".join(f"{k}={v}" for k, v in est.params().items())
    report = CheckReport(f"ratio estimator {est.name}{':' + params if params else ''}", estimator_properties(est))
    if claims:
        from bregzoo.check import check_estimator_claims

        report.outcomes += [_claim(c) for c in check_estimator_claims(est, quick=quick)]
    return report.assert_passed()


def _claim(c: Any) -> Outcome:
    """A ``bregzoo.check.ClaimResult`` as an outcome (worst = its relative error; both are in the detail)."""
    detail = f"abs {c.abs_err:.3g}, rel {c.rel_err:.3g}" + (f"; {c.detail}" if c.detail else "")
    return Outcome("claim", f"{c.claim} [{c.quantity}]", bool(c.passed), float(c.rel_err), float(c.tol), detail)


def registered(kind: str, pattern: str = "*") -> list[str]:
    """Names of one registry kind; handy for ``pytest.mark.parametrize`` over every installed plugin."""
    return get_host().registries[kind].names(pattern)


__all__ = [
    "CheckReport", "Outcome", "check_divergence", "check_estimator", "divergence_properties",
    "estimator_properties", "register_inline_plugin", "registered",
]
