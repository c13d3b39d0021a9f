"""The built-in Bregman generators. r = q/p (student over teacher), ell = log r, omega = r h''(r).

Each class gives h, h', h'' and a closed-form log-space weight; ``bregzoo check`` verifies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lazy_loader

from bregzoo import Divergence
from bregzoo.divergence import require

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_loader.load("torch")  # on first use: `bregzoo divergences` reads only the formulas

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class ReverseKL(Divergence):
    name = "reverse-kl"
    summary = "KL(q||p); DMD, Diff-Instruct, VSD"
    h_formula = "r log r"
    weight_formula = "1"

    def h(self, r: Tensor) -> Tensor:
        return torch.special.xlogy(r, r)

    def dh(self, r: Tensor) -> Tensor:
        return r.log() + 1

    def d2h(self, r: Tensor) -> Tensor:
        return 1 / r

    def log_weight(self, ell: Tensor) -> Tensor:
        return torch.zeros_like(ell)


@dataclass(frozen=True)
class UnnormalisedKL(ReverseKL):
    name = "ukl"
    summary = "unnormalised KL; the KLIEP generator, same gradient as reverse-kl"
    h_formula = "r log r - r"

    def h(self, r: Tensor) -> Tensor:
        return torch.special.xlogy(r, r) - r

    def dh(self, r: Tensor) -> Tensor:
        return r.log()


@dataclass(frozen=True)
class ForwardKL(Divergence):
    name = "kl"
    summary = "KL(p||q), mode-covering; f-distill 'kl'"
    h_formula = "-log r"
    weight_formula = "1/r"

    def h(self, r: Tensor) -> Tensor:
        return -r.log()

    def dh(self, r: Tensor) -> Tensor:
        return -1 / r

    def d2h(self, r: Tensor) -> Tensor:
        return r.reciprocal().square()

    def log_weight(self, ell: Tensor) -> Tensor:
        return -ell


@dataclass(frozen=True)
class LSIF(Divergence):
    name = "lsif"
    summary = "Pearson chi2(q||p), the uLSIF generator; f-distill 'neyman'"
    h_formula = "(r - 1)^2 / 2"
    weight_formula = "r"

    def h(self, r: Tensor) -> Tensor:
        return 0.5 * (r - 1).square()

    def dh(self, r: Tensor) -> Tensor:
        return r - 1

    def d2h(self, r: Tensor) -> Tensor:
        return torch.ones_like(r)

    def log_weight(self, ell: Tensor) -> Tensor:
        return ell.clone()


@dataclass(frozen=True)
class Squared(LSIF):
    name = "squared"
    summary = "r^2/2: lsif up to an affine term, so the same divergence and gradient"
    h_formula = "r^2 / 2"

    def h(self, r: Tensor) -> Tensor:
        return 0.5 * r.square()

    def dh(self, r: Tensor) -> Tensor:
        return r.clone()


@dataclass(frozen=True)
class BinaryKL(Divergence):
    name = "bkl"
    summary = "logistic-regression generator; 2 JS(q||p) up to an affine term"
    h_formula = "r log r - (1 + r) log(1 + r)"
    weight_formula = "1/(1 + r)"

    # Written as r log(r/(1+r)) - log(1+r) = -r log1p(1/r) - log1p(r): the textbook form cancels
    # at large r (h'(1e8) = log r - log1p(r) is 0 in float32 instead of -1e-8).
    def h(self, r: Tensor) -> Tensor:
        return -torch.special.xlog1py(r, r.reciprocal()) - torch.log1p(r)

    def dh(self, r: Tensor) -> Tensor:
        return -torch.log1p(r.reciprocal())

    def d2h(self, r: Tensor) -> Tensor:
        return 1 / (r * (1 + r))

    def log_weight(self, ell: Tensor) -> Tensor:
        return -torch.nn.functional.softplus(ell)


@dataclass(frozen=True)
class JensenShannon(Divergence):
    name = "js"
    summary = "Jensen-Shannon divergence JS(q||p) = bkl/2 + affine; f-distill 'js'"
    h_formula = "(r log r - (1 + r) log((1 + r)/2)) / 2"
    weight_formula = "1/(2(1 + r))"

    # bkl/2 + (1 + r) log(2)/2, in bkl's cancellation-free form.
    def h(self, r: Tensor) -> Tensor:
        return 0.5 * (-torch.special.xlog1py(r, r.reciprocal()) - torch.log1p(r) + (1 + r) * LOG2)

    def dh(self, r: Tensor) -> Tensor:
        return 0.5 * (LOG2 - torch.log1p(r.reciprocal()))

    def d2h(self, r: Tensor) -> Tensor:
        return 0.5 / (r * (1 + r))

    def log_weight(self, ell: Tensor) -> Tensor:
        return -torch.nn.functional.softplus(ell) - LOG2


@dataclass(frozen=True)
class Hellinger(Divergence):
    name = "hellinger"
    summary = "squared Hellinger distance; f-distill 'sh'"
    h_formula = "(sqrt(r) - 1)^2"
    weight_formula = "r^(-1/2) / 2"

    def h(self, r: Tensor) -> Tensor:
        return (r.sqrt() - 1).square()

    def dh(self, r: Tensor) -> Tensor:
        return 1 - r.rsqrt()

    def d2h(self, r: Tensor) -> Tensor:
        return 0.5 * r.pow(-1.5)

    def log_weight(self, ell: Tensor) -> Tensor:
        return -0.5 * ell - LOG2


@dataclass(frozen=True)
class Jeffreys(Divergence):
    name = "jeffreys"
    summary = "KL(q||p) + KL(p||q); f-distill 'jf'"
    h_formula = "r log r - log r"
    weight_formula = "1 + 1/r"

    def h(self, r: Tensor) -> Tensor:
        return (r - 1) * r.log()

    def dh(self, r: Tensor) -> Tensor:
        return r.log() + 1 - 1 / r

    def d2h(self, r: Tensor) -> Tensor:
        return 1 / r + r.reciprocal().square()

    def log_weight(self, ell: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-ell)


@dataclass(frozen=True)
class SoftenedReverseKL(Divergence):
    name = "softened-rkl"
    summary = "softened reverse KL of f-distill 'srkl': KL((p+q)/2 || p) scaled"
    h_formula = "(1 + r) log((1 + r)/2)"
    weight_formula = "r/(1 + r)"

    def h(self, r: Tensor) -> Tensor:
        return (1 + r) * (torch.log1p(r) - LOG2)

    def dh(self, r: Tensor) -> Tensor:
        return torch.log1p(r) - LOG2 + 1

    def d2h(self, r: Tensor) -> Tensor:
        return 1 / (1 + r)

    def log_weight(self, ell: Tensor) -> Tensor:
        return -torch.nn.functional.softplus(-ell)


@dataclass(frozen=True)
class Neyman(Divergence):
    name = "neyman"
    summary = "Neyman chi2(q||p) = Pearson chi2(p||q); f-distill 'pearson'"
    h_formula = "(r - 1)^2 / r"
    weight_formula = "2/r^2"

    def h(self, r: Tensor) -> Tensor:
        return (r - 1) * ((r - 1) / r)  # divide before squaring: (r - 1)^2 overflows float32 from r = e^44

    def dh(self, r: Tensor) -> Tensor:
        return 1 - r.reciprocal().square()

    def d2h(self, r: Tensor) -> Tensor:
        return 2 * r.pow(-3)

    def log_weight(self, ell: Tensor) -> Tensor:
        return LOG2 - 2 * ell


@dataclass(frozen=True)
class Power(Divergence):
    """Basu's power family (density-power divergence generator); alpha -> 0 is reverse-kl."""

    alpha: float = 0.5
    name = "power"
    summary = "Basu power family; alpha -> 0 is reverse-kl, -1/2 is hellinger, 1 is 2 x squared"
    h_formula = "(r^(1+a) - r)/a"
    weight_formula = "(1 + a) r^a"

    def __post_init__(self) -> None:
        require(
            isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)  # true is not a number
            and math.isfinite(self.alpha) and self.alpha > -1,
            f"power: alpha must be a finite number > -1, got {self.alpha!r} (alpha = 0 is reverse-kl)",
        )

    def h(self, r: Tensor) -> Tensor:
        if self.alpha == 0:
            return torch.special.xlogy(r, r)
        return r * _pow_minus_one(r, self.alpha) / self.alpha

    def dh(self, r: Tensor) -> Tensor:
        if self.alpha == 0:
            return r.log() + 1
        # ((1+a) r^a - 1)/a = (1+a)(r^a - 1)/a + 1: the direct form loses every digit as a -> 0.
        return (1 + self.alpha) * _pow_minus_one(r, self.alpha) / self.alpha + 1

    def d2h(self, r: Tensor) -> Tensor:
        return (1 + self.alpha) * r.pow(self.alpha - 1)

    def log_weight(self, ell: Tensor) -> Tensor:
        return math.log1p(self.alpha) + self.alpha * ell


def _pow_minus_one(r: Tensor, c: float) -> Tensor:
    """r^c - 1: expm1 where c log r is small (no cancellation), r^c - 1 elsewhere.

    expm1's backward is expm1(x) + 1, which loses every digit once x << 0; r.pow's does not.
    """
    x = c * r.log()
    return torch.where(x.abs() < 1, torch.expm1(x.clamp(-1, 1)), r.pow(c) - 1)


BUILTIN = [
    ReverseKL, UnnormalisedKL, ForwardKL, LSIF, Squared, BinaryKL, JensenShannon,
    Hellinger, Jeffreys, SoftenedReverseKL, Neyman, Power,
]
