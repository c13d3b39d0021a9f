"""Teachers (denoisers with a schedule), scores from denoisers, and Euler/Heun probability-flow samplers."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from einops import rearrange
from torch import Tensor, nn

from bregzoo.schedules import Schedule

DenoiseFn = Callable[[Tensor, Tensor], Tensor]


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector (B,) to broadcast against ``like`` (B, ...)."""
    return rearrange(v, "b -> b" + " 1" * (like.ndim - 1))


def score_from_denoiser(x: Tensor, x0_hat: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """s(x_t) = (alpha D(x_t) - x_t) / sigma^2 (DESIGN.md); alpha, sigma per sample."""
    a, s = per_sample(alpha, x), per_sample(sigma, x)
    return (a * x0_hat - x) / s.square()


class Teacher(nn.Module):
    """A frozen denoiser D(x_t, t) ~ E[x0 | x_t] under ``schedule``, for data of shape ``data_shape``."""

    def __init__(self, schedule: Schedule, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.schedule = schedule
        self.data_shape = tuple(data_shape)

    def denoise(self, x: Tensor, t: Tensor) -> Tensor:
        """The x0-prediction at times ``t`` (B,)."""
        raise NotImplementedError

    @property
    def sigma_max(self) -> float:
        """The largest noise level s = sigma/alpha at which ``denoise`` is valid: where a trained
        teacher's schedule ends; an exact teacher (the analytic mixture) overrides it with inf."""
        return float(self.schedule.s(torch.tensor(self.schedule.t_max, dtype=torch.float64)))

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """Score of the teacher's marginal p_t."""
        return score_from_denoiser(x, self.denoise(x, t), self.schedule.alpha(t), self.schedule.sigma(t))

    @torch.no_grad()
    def sample(self, n: int, steps: int = 40, method: str = "heun", generator: torch.Generator | None = None) -> Tensor:
        """n samples from the probability-flow ODE with ``steps`` denoiser evaluations per Euler step."""
        device = next(iter(self.parameters()), torch.empty(0)).device
        noise = torch.randn(n, *self.data_shape, generator=generator, device="cpu").to(device)
        return sample_ode(self.denoise, self.schedule, noise, steps, method)


def sampling_schedule(schedule: Schedule, teacher: Teacher, sigma_max: float | None) -> Schedule:
    """``schedule`` with its largest time raised to noise level ``sigma_max`` (as far as the teacher
    is valid), for the teacher's ODE sampler.

    The sampler starts from N(0, s_max^2 I), which is the diffused marginal only when s_max is large
    against the data's scale. A training schedule that stops at s = 3 (the 2-D default) would start it
    from the wrong distribution: on gmm-unbalanced that biases the mode shares by TV 0.08 (docs/math.md).
    EDM samples from s = 80. None keeps the schedule as it is; the time is only ever raised.
    """
    if sigma_max is None:
        return schedule
    s = min(float(sigma_max), teacher.sigma_max)
    t = float(schedule.t_of_s(torch.tensor(s, dtype=torch.float64)))
    return dataclasses.replace(schedule, t_max=t) if math.isfinite(t) and t > schedule.t_max else schedule


@torch.no_grad()
def sample_ode(denoise: DenoiseFn, schedule: Schedule, noise: Tensor, steps: int, method: str = "heun") -> Tensor:
    """Deterministic EDM sampler (Karras et al. 2022, Alg. 1) in y = x/alpha, ds-parameterised.

    dy/ds = (y - D(x, t)) / s. The last step lands on s = 0 by returning D. ``steps`` is the number
    of grid points; Heun adds a corrector at each but the last, as in EDM.
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown sampler {method!r}; use 'euler' or 'heun'")
    ts = schedule.sampling_grid(steps)
    s_all = schedule.s(ts)
    y = noise.double() * s_all[0]

    def d_of(y: Tensor, t: float) -> Tensor:
        tt = torch.full((y.shape[0],), t, dtype=torch.float32, device=noise.device)
        a = schedule.alpha(tt.double())
        x = (y * per_sample(a, y)).to(noise.dtype)
        return denoise(x, tt).double()

    for i in range(steps):
        t_cur, s_cur = float(ts[i]), float(s_all[i])
        x0 = d_of(y, t_cur)
        if i == steps - 1:
            return x0.to(noise.dtype)
        s_next, t_next = float(s_all[i + 1]), float(ts[i + 1])
        slope = (y - x0) / s_cur
        y_next = y + (s_next - s_cur) * slope
        if method == "heun":
            slope_next = (y_next - d_of(y_next, t_next)) / s_next
            y_next = y + (s_next - s_cur) * 0.5 * (slope + slope_next)
        y = y_next
    return y.to(noise.dtype)
