"""Exact densities and quadrature for the claims: isotropic Gaussian mixtures on a uniform grid.

Every integrand in ``bregzoo check`` is smooth (analytic) with Gaussian tails, and for such functions
the plain rectangle rule on a uniform grid is spectrally accurate: its error falls like
exp(-2 pi^2 s^2 / step^2) for a feature of width s, far below float64 rounding for the steps used
here. So no adaptive scheme and no scipy are needed, and autograd runs straight through the sums.
All arithmetic is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

F64 = torch.float64


@dataclass(frozen=True)
class GaussMix:
    """sum_k w_k N(m_k, s_k^2 I) in R^d: means (K, d), stds (K,), weights (K,) summing to 1."""

    means: Tensor
    stds: Tensor
    weights: Tensor

    @staticmethod
    def make(means, stds, weights=None) -> "GaussMix":
        """Build from nested lists or tensors (tensors keep their autograd graph)."""
        m = torch.as_tensor(means, dtype=F64)
        m = m.reshape(-1, 1) if m.ndim == 1 else m
        s = torch.as_tensor(stds, dtype=F64).reshape(-1)
        w = torch.ones(len(s), dtype=F64) if weights is None else torch.as_tensor(weights, dtype=F64)
        return GaussMix(m, s, w / w.sum())

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def variances(self) -> Tensor:
        return self.stds.square()

    def diffuse(self, alpha: float, sigma: float) -> "GaussMix":
        """The law of alpha x + sigma z: each component becomes N(alpha m_k, (alpha^2 s_k^2 + sigma^2) I)."""
        return GaussMix(alpha * self.means, (alpha**2 * self.variances + sigma**2).sqrt(), self.weights)

    def component_log_probs(self, x: Tensor) -> Tensor:
        """log(w_k N(x; m_k, s_k^2 I)) for x (N, d): (N, K)."""
        v = self.variances
        d2 = (x[:, None, :] - self.means[None]).square().sum(-1)
        return self.weights.log() - 0.5 * d2 / v - 0.5 * self.dim * torch.log(2 * math.pi * v)

    def log_prob(self, x: Tensor) -> Tensor:
        """log density at x (N, d): (N,)."""
        return torch.logsumexp(self.component_log_probs(x), dim=1)

    def score(self, x: Tensor) -> Tensor:
        """Exact score grad_x log density: sum_k gamma_k(x) (m_k - x) / s_k^2, (N, d)."""
        gamma = torch.softmax(self.component_log_probs(x), dim=1)
        per = (self.means[None] - x[:, None, :]) / self.variances[None, :, None]
        return (gamma[..., None] * per).sum(1)


@dataclass(frozen=True)
class Grid:
    """Points (N, d) of a uniform grid and the volume ``cell`` of one grid cell."""

    points: Tensor
    cell: float

    def integrate(self, values: Tensor) -> Tensor:
        """Rectangle-rule integral over the grid of values (N,) or (N, k)."""
        return values.sum(0) * self.cell


def grid_covering(mixtures: list[GaussMix], step: float, width: float = 12.0) -> Grid:
    """A uniform grid covering every component mean +- ``width`` times the largest std, per axis."""
    means = torch.cat([m.means.detach() for m in mixtures])
    reach = width * float(max(m.stds.detach().max() for m in mixtures))
    lo, hi = means.min(0).values - reach, means.max(0).values + reach
    axes = [torch.arange(float(a), float(b) + step, step, dtype=F64) for a, b in zip(lo, hi)]
    pts = torch.cartesian_prod(*axes) if len(axes) > 1 else axes[0][:, None]
    return Grid(pts, step ** len(axes))


# -- closed forms for two isotropic Gaussians (one component each) --------------------------------

def _pair(q: GaussMix, p: GaussMix) -> tuple[float, float, float, int]:
    if len(q.weights) != 1 or len(p.weights) != 1:
        raise ValueError("closed forms need single Gaussians")
    dist2 = float((q.means[0] - p.means[0]).square().sum())
    return float(q.variances[0]), float(p.variances[0]), dist2, q.dim


def gaussian_power_integral(q: GaussMix, p: GaussMix, a: float) -> float:
    """int q^a p^(1-a) dx for isotropic Gaussians; finite iff a/v_q + (1-a)/v_p > 0 (else inf).

    Completing the square in a/v_q |x-m_q|^2 + (1-a)/v_p |x-m_p|^2 gives, per dimension,
    v_q^(-a/2) v_p^(-(1-a)/2) lam^(-1/2) with lam = a/v_q + (1-a)/v_p, times
    exp(-a(1-a)|m_q-m_p|^2 / (2(a v_p + (1-a) v_q))).
    """
    vq, vp, dist2, d = _pair(q, p)
    lam = a / vq + (1 - a) / vp
    if lam <= 0:
        return math.inf
    log_pre = d * (-0.5 * a * math.log(vq) - 0.5 * (1 - a) * math.log(vp) - 0.5 * math.log(lam))
    return math.exp(log_pre - 0.5 * a * (1 - a) * dist2 / (a * vp + (1 - a) * vq))


def gaussian_kl(q: GaussMix, p: GaussMix) -> float:
    """KL(q || p) = d/2 (v_q/v_p - 1 - log(v_q/v_p)) + |m_q - m_p|^2 / (2 v_p)."""
    vq, vp, dist2, d = _pair(q, p)
    return 0.5 * d * (vq / vp - 1 - math.log(vq / vp)) + 0.5 * dist2 / vp

