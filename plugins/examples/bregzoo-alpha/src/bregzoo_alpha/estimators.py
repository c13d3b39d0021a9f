"""Relative uLSIF (RuLSIF; Yamada, Suzuki, Kanamori, Hachiya & Sugiyama, Neural Computation 2013).

RuLSIF fits the alpha-relative density ratio of the student q over the teacher p,

    r_alpha = q / (alpha q + (1 - alpha) p) = r / (alpha r + 1 - alpha),      0 < r_alpha < 1/alpha,

by least squares: minimise (alpha/2) E_q[g^2] + ((1 - alpha)/2) E_p[g^2] - E_q[g] over g. Pointwise the
minimiser is g = r_alpha, which stays bounded where the plain ratio r = q/p explodes, so the fit is
stable where uLSIF (alpha = 0) is not.

Parametrisation: the network outputs ell = log r, as every bregzoo estimator does, and the loss maps it
to the relative ratio through alpha g = sigmoid(ell + log(alpha/(1 - alpha))). That spans exactly the
admissible (0, 1/alpha), maps an output of 0 to r = 1 (a fresh network starts at "student = teacher"),
and makes the way back from the fitted relative ratio to log(q/p) exact: ell = logit(alpha g) - logit(alpha).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import lazy_loader

from bregzoo import RatioEstimator, Spec, hookimpl
from bregzoo.divergence import require

if TYPE_CHECKING:
    from torch import Tensor

# torch on first use: `bregzoo plugins` and `bregzoo divergences` load this module only to list it.
torch = lazy_loader.load("torch")


@dataclass(frozen=True)
class RuLSIF(RatioEstimator):
    """Relative uLSIF with mixing weight alpha in (0, 1); alpha -> 0 is bregzoo's ``lsif``."""

    alpha: float = 0.1
    name: ClassVar[str] = "rulsif"

    def __post_init__(self) -> None:
        ok = isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)
        require(
            ok and 0 < self.alpha < 1,
            f"rulsif: alpha must be a number in (0, 1), got {self.alpha!r} "
            "(e.g. rulsif:alpha=0.1; for alpha = 0 use the built-in 'lsif')",
        )

    def relative_ratio(self, out: Tensor) -> Tensor:
        """r_alpha = r / (alpha r + 1 - alpha) at r = exp(log_ratio(out)); always in (0, 1/alpha)."""
        logit_alpha = math.log(self.alpha) - math.log1p(-self.alpha)
        return torch.sigmoid(self.log_ratio(out) + logit_alpha) / self.alpha

    def log_ratio_from_relative(self, g: Tensor) -> Tensor:
        """The way back: log r = logit(alpha g) - logit(alpha), for g in (0, 1/alpha)."""
        return torch.logit(self.alpha * g) - (math.log(self.alpha) - math.log1p(-self.alpha))

    def loss_terms(self, out_ref: Tensor, out_student: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample ((1-alpha)/2 g^2 at teacher samples, alpha/2 g^2 - g at student samples)."""
        g_ref, g_stu = self.relative_ratio(out_ref), self.relative_ratio(out_student)
        return 0.5 * (1 - self.alpha) * g_ref.square(), 0.5 * self.alpha * g_stu.square() - g_stu

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@hookimpl
def register_ratio_estimators() -> list[Spec]:
    """The RuLSIF estimator, built as ``rulsif`` or ``rulsif:alpha=0.2``."""
    return [Spec("rulsif", RuLSIF, "relative uLSIF (Yamada et al. 2013); fits q/(alpha q + (1-alpha) p)")]
