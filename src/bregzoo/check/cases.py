"""The exact test problems behind the claims.

* Density cases (claim 2): a Gaussian student against a Gaussian, and against a 2-component mixture.
* Diffused cases (claims 3 and 6): a student N(mu, s^2 I) whose sample is x0 = mu + s eps, diffused
  to x_t = alpha x0 + sigma z at a fixed t of the VP or EDM schedule, against a Gaussian-mixture
  teacher diffused the same way. Then q_t = N(alpha mu, (alpha^2 s^2 + sigma^2) I) exactly.

Every case keeps the student's variance below every teacher component's but above half of it (in
diffused space; DESIGN.md section 4). Then r = q/p -> 0 in the tails, so generators that grow with r
(lsif, squared, power) stay finite, and generators that blow up as r -> 0 like r^-1 (neyman) stay
integrable too: int p^2/q needs v_q > v_p / 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import torch
from torch import Tensor

from bregzoo.check.quadrature import F64, GaussMix, Grid, grid_covering
from bregzoo.schedules import EDMSchedule, Schedule, VPSchedule


@dataclass(frozen=True)
class DensityCase:
    """A student density q and a teacher density p on a grid."""

    name: str
    q: GaussMix
    p: GaussMix
    step: float

    @cached_property
    def grid(self) -> Grid:
        return grid_covering([self.q, self.p], self.step)

    @cached_property
    def logq(self) -> Tensor:
        return self.q.log_prob(self.grid.points)

    @cached_property
    def logp(self) -> Tensor:
        return self.p.log_prob(self.grid.points)

    @property
    def gaussian(self) -> bool:
        """Whether both sides are single Gaussians, so closed forms apply."""
        return len(self.q.weights) == 1 and len(self.p.weights) == 1


@dataclass(frozen=True)
class DiffusedCase:
    """A Gaussian student and a mixture teacher, both diffused to time t; theta = (mu, s)."""

    name: str
    teacher: GaussMix
    mu: tuple[float, ...]
    s: float
    schedule: Schedule = field(compare=False)
    t: float
    step: float

    @cached_property
    def alpha(self) -> float:
        return float(self.schedule.alpha(torch.tensor(self.t, dtype=F64)))

    @cached_property
    def sigma(self) -> float:
        return float(self.schedule.sigma(torch.tensor(self.t, dtype=F64)))

    @property
    def dim(self) -> int:
        return len(self.mu)

    def theta0(self) -> Tensor:
        """The student's parameters (mu_1, ..., mu_d, s) at which gradients are compared."""
        return torch.tensor([*self.mu, self.s], dtype=F64)

    def student_t(self, theta: Tensor) -> GaussMix:
        """q_t for parameters theta; differentiable in theta."""
        mu, s = theta[: self.dim], theta[self.dim]
        std = (self.alpha**2 * s.square() + self.sigma**2).sqrt()
        return GaussMix(self.alpha * mu[None], std.reshape(1), torch.ones(1, dtype=F64))

    @cached_property
    def teacher_t(self) -> GaussMix:
        return self.teacher.diffuse(self.alpha, self.sigma)

    @cached_property
    def grid(self) -> Grid:
        return grid_covering([self.teacher_t, self.student_t(self.theta0())], self.step)

    @cached_property
    def logp(self) -> Tensor:
        return self.teacher_t.log_prob(self.grid.points)

    @cached_property
    def logq(self) -> Tensor:
        return self.student_t(self.theta0()).log_prob(self.grid.points)

    @cached_property
    def score_gap(self) -> Tensor:
        """s_q - s_p on the grid, (N, d): exact scores of both diffused marginals."""
        x = self.grid.points
        return self.student_t(self.theta0()).score(x) - self.teacher_t.score(x)

    @cached_property
    def eps_given_x(self) -> Tensor:
        """E[eps | x_t = x] = alpha s (x - alpha mu) / v_q, (N, d): eps and x_t are jointly Gaussian."""
        q = self.student_t(self.theta0())
        return self.alpha * self.s * (self.grid.points - q.means) / q.variances

    def push_forward(self, field_x: Tensor) -> Tensor:
        """E_{eps,z}[F(x_t) . dx_t/dtheta] for a vector field F (N, d) on the grid.

        dx_t/dmu = alpha I and dx_t/ds = alpha eps. The eps-dependence is integrated out exactly
        through E[eps | x_t], so one d-dimensional quadrature over x_t suffices.
        """
        wq = self.logq.exp()
        g_mu = self.alpha * self.grid.integrate(wq[:, None] * field_x)
        g_s = self.alpha * self.grid.integrate(wq * (field_x * self.eps_given_x).sum(1))
        return torch.cat([g_mu, g_s.reshape(1)])


def _teacher_1d() -> GaussMix:
    return GaussMix.make([-1.0, 1.2], [0.5, 0.6], [0.3, 0.7])


def _teacher_2d() -> GaussMix:
    return GaussMix.make([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]], [0.5, 0.55, 0.6], [0.3, 0.3, 0.4])


@lru_cache(maxsize=2)
def density_cases(quick: bool = False) -> tuple[DensityCase, ...]:
    """q Gaussian vs p Gaussian, and q Gaussian vs p a two-component mixture (1-D)."""
    step = 0.1 if quick else 0.05
    mixture = GaussMix.make([-1.2, 0.9], [0.7, 0.8], [0.35, 0.65])
    return (
        DensityCase("N(0.4,0.85^2) vs N(0,1)", GaussMix.make([0.4], [0.85]), GaussMix.make([0.0], [1.0]), step),
        DensityCase("N(0.2,0.75^2) vs mixture", GaussMix.make([0.2], [0.75]), mixture, step),
    )


@lru_cache(maxsize=4)
def diffused_cases(dim: int, quick: bool = False) -> tuple[DiffusedCase, ...]:
    """The student/teacher pairs of the gradient claims in ``dim`` = 1 or 2, under EDM and VP."""
    if dim == 1:
        teacher, mu, step = _teacher_1d(), (0.2,), (0.1 if quick else 0.05)
    else:
        teacher, mu, step = _teacher_2d(), (0.1, -0.1), (0.25 if quick else 0.12)
    cases = [DiffusedCase(f"{dim}-D EDM t=0.6", teacher, mu, 0.45, EDMSchedule(), 0.6, step)]
    if not quick or dim == 1:
        cases.append(DiffusedCase(f"{dim}-D VP t=0.15", teacher, mu, 0.45, VPSchedule(), 0.15, step))
    return tuple(cases)
