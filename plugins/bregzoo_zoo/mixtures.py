"""Gaussian-mixture tasks and their exact teacher: a diffused mixture is still a mixture.

Component k is N(mu_k, std_k^2 I). At time t it is N(alpha mu_k, (alpha^2 std_k^2 + sigma^2) I), so
the teacher's denoiser E[x0 | x_t] and score are exact at every noise level.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bregzoo import BregzooError
from bregzoo.schedules import Schedule
from bregzoo.teacher import Teacher


class Mixture(nn.Module):
    """An isotropic Gaussian mixture in R^d; a task dataset with exact samples and density."""

    def __init__(self, name: str, means: Tensor, stds: Tensor, weights: Tensor) -> None:
        super().__init__()
        self.name = name
        self.register_buffer("means", means.double())
        self.register_buffer("stds", stds.double())
        self.register_buffer("weights", (weights / weights.sum()).double())
        self.data_shape = (means.shape[1],)

    @property
    def std(self) -> float:
        """Overall standard deviation per coordinate; used as EDM's sigma_data."""
        w, m = self.weights, self.means
        mean = (w[:, None] * m).sum(0)
        var = (w[:, None] * ((m - mean).square() + self.stds[:, None].square())).sum(0)
        return float(var.mean().sqrt())

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact samples (float32, CPU)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.data_shape[0], generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * z).float()

    def diffused_log_prob(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Per-component log(pi_k N(x; alpha mu_k, v_k I)) (B, K) and the variances v_k (B, K)."""
        x = x.double()
        a, s = alpha.double()[:, None], sigma.double()[:, None]
        var = a.square() * self.stds.square()[None] + s.square()
        d2 = (x[:, None, :] - a[..., None] * self.means[None]).square().sum(-1)
        d = self.data_shape[0]
        logp = self.weights.log()[None] - 0.5 * d2 / var - 0.5 * d * (2 * math.pi * var).log()
        return logp, var

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density of the clean mixture."""
        one = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
        logp, _ = self.diffused_log_prob(x, one, 0 * one)
        return torch.logsumexp(logp, 1)

    def extra_repr(self) -> str:
        return f"{self.name}: K={len(self.weights)}, d={self.data_shape[0]}"


class MixtureTeacher(Teacher):
    """The exact denoiser of a diffused Gaussian mixture: E[x0|x_t] = sum_k gamma_k m_k(x_t)."""

    def __init__(self, mixture: Mixture, schedule: Schedule) -> None:
        super().__init__(schedule, mixture.data_shape)
        self.mixture = mixture

    @property
    def sigma_max(self) -> float:
        return math.inf  # exact at every noise level

    def denoise(self, x: Tensor, t: Tensor) -> Tensor:
        m = self.mixture
        a, s = self.schedule.alpha(t.double()), self.schedule.sigma(t.double())
        logp, var = m.diffused_log_prob(x, a, s)
        gamma = torch.softmax(logp, dim=1)  # (B, K)
        gain = a[:, None] * m.stds.square()[None] / var  # (B, K)
        resid = x.double()[:, None, :] - a[:, None, None] * m.means[None]
        post = m.means[None] + gain[..., None] * resid  # E[x0 | x_t, k]
        return (gamma[..., None] * post).sum(1).to(x.dtype)


def gmm8() -> Mixture:
    """Eight equal Gaussians on a ring of radius 2, std 0.1."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 2.0 * torch.stack([ang.cos(), ang.sin()], 1)
    return Mixture("gmm8", means, torch.full((8,), 0.1), torch.ones(8))


def gmm25() -> Mixture:
    """A 5x5 grid of equal Gaussians at spacing 1, std 0.08."""
    g = torch.arange(-2, 3, dtype=torch.float64)
    means = torch.cartesian_prod(g, g)
    return Mixture("gmm25", means, torch.full((25,), 0.08), torch.ones(25))


def gmm_unbalanced() -> Mixture:
    """Four Gaussians on a square with weights 0.6, 0.25, 0.1, 0.05: mode seeking vs covering shows."""
    means = torch.tensor([[-1.5, -1.5], [1.5, -1.5], [1.5, 1.5], [-1.5, 1.5]], dtype=torch.float64)
    return Mixture("gmm-unbalanced", means, torch.full((4,), 0.15), torch.tensor([0.6, 0.25, 0.1, 0.05]))


def gmm_rare() -> Mixture:
    """Eight Gaussians on a ring of radius 2, std 0.1: four heavy (24% each) between four rare ones (1% each)."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 2.0 * torch.stack([ang.cos(), ang.sin()], 1)
    return Mixture("gmm-rare", means, torch.full((8,), 0.1), torch.tensor([0.24, 0.01] * 4))


def gmm_hd(dim: int = 16, modes: int = 8, radius: float = 2.0, std: float = 0.2, layout_seed: int = 0) -> Mixture:
    """``modes`` equal Gaussians in ``dim`` dimensions (std 0.2), means at random directions on a sphere of radius 2.

    The directions come from a fixed seed (``layout_seed``), so a task spec names one distribution. In 16 or
    more dimensions random directions are nearly orthogonal: modes sit about radius·√2 apart, far beyond
    their spread, while a ratio estimator must now work in ``dim`` dimensions.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise BregzooError(f"gmm-hd: dim must be an integer >= 2, got {dim!r}")
    if isinstance(modes, bool) or not isinstance(modes, int) or not 1 <= modes <= 1024:
        raise BregzooError(f"gmm-hd: modes must be an integer in [1, 1024], got {modes!r}")
    if not (math.isfinite(radius) and radius > 0 and math.isfinite(std) and std > 0):
        raise BregzooError(f"gmm-hd: radius and std must be positive and finite, got {radius!r}, {std!r}")
    if dim > 4096:
        raise BregzooError(f"gmm-hd: dim must be at most 4096, got {dim}")
    g = torch.Generator().manual_seed(int(layout_seed))
    directions = torch.randn(modes, dim, generator=g, dtype=torch.float64)
    means = radius * directions / directions.norm(dim=1, keepdim=True)
    return Mixture(f"gmm-hd{dim}", means, torch.full((modes,), float(std)), torch.ones(modes))


def analytic_gmm(dataset: Mixture, schedule: Schedule) -> MixtureTeacher:
    """The exact teacher of a mixture task (no weights to load)."""
    if not isinstance(dataset, Mixture):
        raise TypeError("the analytic-gmm teacher needs a Gaussian-mixture task such as gmm8")
    return MixtureTeacher(dataset, schedule)
