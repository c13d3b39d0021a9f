"""The claim table and the runner behind ``bregzoo check``.

A claim is a function ``(subject, quick) -> list[ClaimResult]``. Divergence claims run for every
registered divergence, so a third-party h is checked for free; named claims return nothing for a
divergence whose name is not in the dictionary. A claim that raises becomes a failed row: a broken
plugin shows up in the table instead of stopping the run.
"""

from __future__ import annotations

import fnmatch
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import torch

from bregzoo.check import estimators as est_claims
from bregzoo.check import gradient, objective, special, weights
from bregzoo.check.result import ClaimResult, failed
from bregzoo.divergence import Divergence
from bregzoo.errors import BregzooError
from bregzoo.estimator import RatioEstimator


@dataclass(frozen=True)
class Claim:
    """A named claim: the rows it can produce, what it compares, and the function that checks it."""

    names: tuple[str, ...]
    description: str
    quantity: str
    tol: float
    run: Callable[[Any, bool], list[ClaimResult]]


DIVERGENCE_CLAIMS: tuple[Claim, ...] = (
    Claim(("weight-autograd",), f"log w(l) equals log(r h''(r)), h'' by high-precision autograd of h, {weights.RANGE}",
          "log w vs autograd", weights.WEIGHT_TOL, weights.weight_claim),
    Claim(("weight-float32",), f"log w(l) called in float32, as training does, is within 1e-4 of it, {weights.RANGE}",
          "log w in float32", weights.FLOAT32_TOL, weights.weight_float32_claim),
    Claim(("derivs-autograd",), f"h' and h'' equal high-precision autograd of h, {weights.RANGE}",
          "h', h'' vs autograd", weights.WEIGHT_TOL, weights.derivatives_claim),
    Claim(("objective-fdiv",), "E_p[B_h(r,1)] = E_p[h(r)] - h(1) = D_f(q||p) by 1-D quadrature",
          "D_h vs D_f", objective.OBJECTIVE_TOL, objective.objective_claim),
    Claim(("gradient-1d",), "Di-Bregman gradient = autograd gradient of D_h, 1-D student under VP and EDM",
          "gradient", gradient.GRADIENT_TOL, partial(gradient.gradient_claim, dim=1)),
    Claim(("gradient-2d",), "Di-Bregman gradient = autograd gradient of D_h, 2-D student under VP and EDM",
          "gradient", gradient.GRADIENT_TOL, partial(gradient.gradient_claim, dim=2)),
    Claim(("discriminator-form",), "-h''((1-D)/D) grad D / D^2 form = score-difference form, D = p/(p+q)",
          "gradient via D", gradient.GRADIENT_TOL, gradient.discriminator_claim),
    Claim(("affine-invariance",), "h + a + b r gives the same objective and gradient",
          "D, gradient", gradient.AFFINE_TOL, gradient.affine_claim),
    Claim(("named-divergence",), "D_h equals the divergence its dictionary row names (and its closed form)",
          "D_h vs named", objective.OBJECTIVE_TOL, special.named_divergence_claim),
    Claim(("named-gradient",), "Di-Bregman gradient = autograd gradient of the named divergence itself",
          "gradient vs named", gradient.GRADIENT_TOL, special.named_gradient_claim),
    Claim(("dmd-gradient",), "reverse-kl, ukl: w == 1, the DMD / Diff-Instruct gradient",
          "w, gradient vs DMD", special.EXACT_TOL, special.dmd_claim),
    Claim(("affine-pair",), "lsif/squared, reverse-kl/ukl, js/bkl: identical D, gradient and weight",
          "pair", special.EXACT_TOL, special.affine_pair_claim),
    Claim(("power-limit",), "power(alpha) -> reverse-kl as alpha -> 0, gap O(alpha)",
          "limit", 1e-3, special.power_limit_claim),
    Claim(("fdistill-weight",), "w(r) = c u^2 f''(u) at u = 1/r for f-distill's weights (u = p/q)",
          "f-distill weight", special.WEIGHT_TOL, special.fdistill_weight_claim),
    Claim(("fdistill-objective",), "D_h = c D_f(p||q): h is the perspective r f(1/r) of f-distill's f",
          "f-distill objective", objective.OBJECTIVE_TOL, special.fdistill_objective_claim),
    Claim(("estimator-loss",), "BR_h for bkl / lsif / squared / ukl = logistic / uLSIF (+1/2) / uLSIF / KLIEP",
          "BR_h vs named", est_claims.LOSS_TOL, est_claims.br_named_claim),
)

ESTIMATOR_CLAIMS: tuple[Claim, ...] = (
    Claim(("estimator-loss",), "a built-in estimator's loss = its textbook objective on random inputs",
          "loss vs named", est_claims.LOSS_TOL, est_claims.named_estimator_claim),
    Claim(("estimator-bregman",), "a BR_h estimator's loss = BR_h with h' by autograd",
          "loss vs BR_h", est_claims.LOSS_TOL, est_claims.bregman_estimator_claim),
    Claim(("estimator-training",), "training l = a x^2 + b x + c recovers log(q/p) of two Gaussians",
          "MAE", est_claims.MAE_TOL, est_claims.training_claim),
)

GLOBAL_CLAIMS: tuple[Claim, ...] = (
    Claim(("quadrature",), "the harness: densities integrate to 1, Gaussian closed forms by quadrature",
          "quadrature", 1e-10, lambda _, quick: objective.quadrature_claim(quick)),
)


def list_claims() -> dict[str, str]:
    """Every claim name with a one-line description, in run order."""
    out: dict[str, str] = {}
    for claim in GLOBAL_CLAIMS + DIVERGENCE_CLAIMS + ESTIMATOR_CLAIMS:
        for name in claim.names:
            out[name] = out[name] + "; " + claim.description if name in out else claim.description
    return out


def _patterns(claims: str) -> list[str]:
    return [p.strip() for p in claims.split(",") if p.strip()] or ["*"]


def _selected(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the arrays are small, and on a busy machine OpenMP workers stall
    each elementwise op for milliseconds (measured: exp of 8k doubles, 14 us vs 8 ms)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run(table: tuple[Claim, ...], subject: Any, label: str, quick: bool, patterns: list[str]) -> list[ClaimResult]:
    rows: list[ClaimResult] = []
    for claim in table:
        wanted = [n for n in claim.names if _selected(n, patterns)]
        if not wanted:
            continue
        try:
            produced = claim.run(subject, quick)
        except Exception as exc:  # a plugin's bug must become a failed row, not a crash
            produced = [failed(n, label, claim.quantity, claim.tol, exc) for n in wanted]
        rows.extend(r for r in produced if r.claim in wanted)
    return rows


def check_divergence_claims(div: Divergence, quick: bool = False, claims: str = "*") -> list[ClaimResult]:
    """Run every claim parametrised by one divergence instance (registered or not).

    Example:
        >>> from bregzoo import create_divergence
        >>> rows = check_divergence_claims(create_divergence("kl"), quick=True)
        >>> all(r.passed for r in rows)
        True
    """
    with _one_thread():
        return _run(DIVERGENCE_CLAIMS, div, _label(div), quick, _patterns(claims))


def check_estimator_claims(estimator: RatioEstimator, quick: bool = False, claims: str = "*") -> list[ClaimResult]:
    """Run every claim parametrised by one ratio estimator (loss identities, training on two Gaussians)."""
    with _one_thread():
        return _run(ESTIMATOR_CLAIMS, estimator, getattr(estimator, "name", "") or type(estimator).__name__,
                    quick, _patterns(claims))


def _label(div: Divergence) -> str:
    try:
        return div.spec()
    except Exception:
        return getattr(div, "name", "") or type(div).__name__


def run_checks(
    divergences: str = "*", claims: str = "*", quick: bool = False, estimators: str | None = None
) -> list[ClaimResult]:
    """Run the claims for every divergence matching ``divergences`` and every matching estimator.

    ``divergences`` is an fnmatch pattern of registered names, or one spec such as ``power:alpha=2``.
    ``claims`` is a comma-separated list of fnmatch patterns of claim names (see ``list_claims``).
    ``estimators`` is a pattern of estimator names; by default all of them when ``divergences`` is
    ``"*"`` and none when the run is restricted to some divergences.
    """
    from bregzoo.api import create_divergence, create_ratio_estimator, list_divergences, list_ratio_estimators

    patterns = _patterns(claims)
    known = list_claims()
    if not any(_selected(n, patterns) for n in known):
        raise BregzooError(f"no claim matches {claims!r}; the claims are: {', '.join(known)}")
    if ":" in divergences:
        div_names = [divergences]
    else:
        div_names = list_divergences(divergences)
        if not div_names:
            raise BregzooError(f"no divergence matches {divergences!r}; 'bregzoo divergences' lists them")
    est_pattern = estimators if estimators is not None else ("*" if divergences == "*" else "")
    est_names = list_ratio_estimators(est_pattern) if est_pattern else []
    if estimators and not est_names:
        raise BregzooError(f"no ratio estimator matches {estimators!r}")

    results = _run(GLOBAL_CLAIMS, None, "", quick, patterns)
    for name in div_names:
        try:
            div = create_divergence(name)
        except BregzooError as exc:
            if ":" in name:
                raise  # the user's own spec is wrong: a user error, not a failed claim
            results.append(failed("create", name, "builds with default parameters", 0.0, exc))
            continue
        results += check_divergence_claims(div, quick, claims)
    for name in est_names:
        try:
            est = create_ratio_estimator(name)
        except BregzooError as exc:
            results.append(failed("create", name, "builds with default parameters", 0.0, exc))
            continue
        results += check_estimator_claims(est, quick, claims)
    return results

