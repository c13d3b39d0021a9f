"""ClaimResult, one row of ``bregzoo check``, and the helpers that build rows from compared numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Denominators below this are treated as zero, so a relative error never divides by rounding noise.
TINY = 1e-300


@dataclass(frozen=True)
class ClaimResult:
    """One checked claim for one subject (a divergence, an estimator, or "" for a global claim).

    ``abs_err`` and ``rel_err`` are the worst errors over everything the claim compared; ``passed``
    says whether the error the claim is judged on (documented in ``quantity``) is below ``tol``.
    """

    claim: str
    subject: str
    quantity: str
    abs_err: float
    rel_err: float
    tol: float
    passed: bool
    detail: str = ""


def errors(got: Tensor | float, want: Tensor | float, pointwise: bool = False) -> tuple[float, float]:
    """(max |got - want|, relative error) in float64; NaN or inf anywhere gives inf.

    The relative error is ||got - want|| / ||want|| for a vector quantity (a gradient), or with
    ``pointwise`` the worst |got - want| / |want| over the elements (a function on a grid).
    """
    g = torch.as_tensor(got, dtype=torch.float64).flatten()
    w = torch.as_tensor(want, dtype=torch.float64).flatten()
    if not (torch.isfinite(g).all() and torch.isfinite(w).all()) or (g.numel() != w.numel() and w.numel() != 1):
        return math.inf, math.inf  # NaN, overflow, or a plugin returning the wrong shape
    diff = g - w
    abs_err = float(diff.abs().max()) if diff.numel() else 0.0
    if pointwise:
        ratio = diff.abs() / w.abs().clamp_min(TINY)
        return abs_err, float(ratio.max()) if ratio.numel() else 0.0
    scale = float(w.norm())
    rel_err = float(diff.norm()) / scale if scale > TINY else (0.0 if abs_err == 0 else math.inf)
    return abs_err, rel_err


class Worst:
    """Keeps the worst (abs, rel) error over several comparisons, and which one it was."""

    def __init__(self) -> None:
        self.abs_err, self.rel_err, self.where, self.count = 0.0, 0.0, "", 0

    def add(self, got: Tensor | float, want: Tensor | float, where: str = "", pointwise: bool = False) -> None:
        """Compare ``got`` with ``want`` (see ``errors``) and remember the worst so far."""
        a, r = errors(got, want, pointwise)
        self.add_errors(a, r, where)

    def add_errors(self, abs_err: float, rel_err: float, where: str = "") -> None:
        """Record errors computed elsewhere; NaN counts as infinitely wrong."""
        if not (math.isfinite(abs_err) and math.isfinite(rel_err)):
            abs_err = rel_err = math.inf
        if rel_err > self.rel_err or not self.count:
            self.where = where
        self.count += 1
        self.rel_err, self.abs_err = max(self.rel_err, rel_err), max(self.abs_err, abs_err)

    def result(self, claim: str, subject: str, quantity: str, tol: float, detail: str = "") -> ClaimResult:
        """The row: passes when the worst relative error is below ``tol`` (and something was compared)."""
        where = f"worst: {self.where}" if self.where else ""
        empty = "" if self.count else "nothing was compared"
        text = "; ".join(t for t in (detail, where, empty) if t)
        passed = self.count > 0 and self.rel_err < tol
        return ClaimResult(claim, subject, quantity, self.abs_err, self.rel_err, tol, passed, text)


def failed(claim: str, subject: str, quantity: str, tol: float, exc: BaseException) -> ClaimResult:
    """A row for a claim that could not be evaluated: a plugin raised, or returned garbage."""
    return ClaimResult(claim, subject, quantity, math.inf, math.inf, tol, False, f"{type(exc).__name__}: {exc}")
