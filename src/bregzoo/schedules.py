"""Noise schedules: x_t = alpha(t) x0 + sigma(t) z, with VP (DDPM's linear beta) and EDM (alpha = 1, sigma = t).

Samplers and networks work in the scaled variable y = x/alpha with noise level s = sigma/alpha, where
every schedule looks like EDM's; ``t_of_s`` maps back.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bregzoo.errors import BregzooError


@dataclass(frozen=True)
class Schedule:
    """Base: subclasses give alpha, sigma and t_of_s; t is sampled on [t_min, t_max]."""

    t_min: float
    t_max: float

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def t_of_s(self, s: Tensor) -> Tensor:
        """The time at which sigma/alpha equals s."""
        raise NotImplementedError

    def s(self, t: Tensor) -> Tensor:
        """Noise level in the scaled space, sigma/alpha."""
        return self.sigma(t) / self.alpha(t)

    def sample_t(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """Training times: uniform on [t_min, t_max] (DMD/DMD2 practice)."""
        u = torch.rand(n, generator=generator, device=device or "cpu", dtype=torch.float32)
        return (self.t_min + (self.t_max - self.t_min) * u).to(device or "cpu")

    def sampling_grid(self, steps: int, rho: float = 7.0) -> Tensor:
        """Decreasing times for an N-step sampler, EDM rho-spaced in s, float64 on the CPU."""
        if steps < 1:
            raise BregzooError(f"sampler steps must be >= 1, got {steps}")
        ends = torch.tensor([self.t_max, self.t_min], dtype=torch.float64)
        s_max, s_min = self.s(ends).tolist()
        i = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
        s = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        return self.t_of_s(s)


@dataclass(frozen=True)
class VPSchedule(Schedule):
    """Variance preserving, linear beta: alpha = exp(-(b0 t + (b1 - b0) t^2 / 2) / 2) (DDPM, Song et al.)."""

    t_min: float = 1e-3
    t_max: float = 1.0
    beta_min: float = 0.1
    beta_max: float = 20.0
    name = "vp"

    def _log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * (self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t.square())

    def alpha(self, t: Tensor) -> Tensor:
        return self._log_alpha(t).exp()

    def sigma(self, t: Tensor) -> Tensor:
        return (-torch.expm1(2 * self._log_alpha(t))).sqrt()

    def t_of_s(self, s: Tensor) -> Tensor:
        d = self.beta_max - self.beta_min
        return (-self.beta_min + (self.beta_min**2 + 2 * d * torch.log1p(s.square())).sqrt()) / d


@dataclass(frozen=True)
class EDMSchedule(Schedule):
    """EDM (Karras et al. 2022): alpha = 1, sigma = t; training sigma is log-uniform on [t_min, t_max]."""

    t_min: float = 0.002
    t_max: float = 80.0
    name = "edm"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def t_of_s(self, s: Tensor) -> Tensor:
        return s

    def sample_t(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        u = torch.rand(n, generator=generator, device=device or "cpu", dtype=torch.float32)
        lo, hi = math.log(self.t_min), math.log(self.t_max)
        return (lo + (hi - lo) * u).exp().to(device or "cpu")


SCHEDULES = {"vp": VPSchedule, "edm": EDMSchedule}


def make_schedule(name: str, **params) -> Schedule:
    """``make_schedule("edm", t_max=10.0)``; an unknown name or parameter, or a value outside the
    schedule's domain, is a user error (it would otherwise surface mid-run as a TypeError or a NaN)."""
    if name not in SCHEDULES:
        raise BregzooError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    accepted = [f.name for f in dataclasses.fields(cls)]
    for key, value in params.items():
        if key not in accepted:
            raise BregzooError(f"schedule {name!r} has no parameter {key!r}; it accepts: {', '.join(accepted)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BregzooError(f"schedule {name!r}: {key} must be a finite number, got {value!r}")
    sched = cls(**{k: float(v) for k, v in params.items()})
    if not 0 < sched.t_min < sched.t_max:
        raise BregzooError(f"schedule {name!r}: need 0 < t_min < t_max, got t_min={sched.t_min}, t_max={sched.t_max}")
    if isinstance(sched, VPSchedule) and not 0 <= sched.beta_min < sched.beta_max:
        raise BregzooError(f"schedule 'vp': need 0 <= beta_min < beta_max, got beta_min={sched.beta_min}, "
                           f"beta_max={sched.beta_max}")
    return sched
