"""Wrappers that turn a backbone ``net(x, c_noise)`` into a denoiser or a log-ratio estimator.

Backbone convention (every backbone plugin follows it): ``factory(data_shape, scalar_output=False,
**options)`` returns an ``nn.Module`` with ``forward(x, c_noise)``, x of shape (B, *data_shape) and
c_noise of shape (B,). It returns (B, *data_shape), or (B,) when ``scalar_output=True``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bregzoo.schedules import Schedule
from bregzoo.teacher import per_sample


class Denoiser(nn.Module):
    """EDM preconditioning (Karras et al. 2022) in y = x/alpha: D = c_skip y + c_out F(c_in y, log(s)/4)."""

    def __init__(self, net: nn.Module, schedule: Schedule, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.net, self.schedule, self.sigma_data = net, schedule, float(sigma_data)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        s = self.schedule.s(t).to(x.dtype)
        y = x / per_sample(self.schedule.alpha(t).to(x.dtype), x)
        sd2, s2 = self.sigma_data**2, per_sample(s, x).square()
        c_skip = sd2 / (s2 + sd2)
        c_out = per_sample(s, x) * self.sigma_data / (s2 + sd2).sqrt()
        c_in = 1 / (s2 + sd2).sqrt()
        return c_skip * y + c_out * self.net(c_in * y, s.log() / 4)


class RatioNet(nn.Module):
    """A time-conditioned log-ratio network: ell(x_t, t) from a scalar-output backbone."""

    def __init__(self, net: nn.Module, schedule: Schedule, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.net, self.schedule, self.sigma_data = net, schedule, float(sigma_data)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        s = self.schedule.s(t).to(x.dtype)
        y = x / per_sample(self.schedule.alpha(t).to(x.dtype), x)
        c_in = 1 / (per_sample(s, x).square() + self.sigma_data**2).sqrt()
        return self.net(c_in * y, s.log() / 4)


def diffuse(x0: Tensor, t: Tensor, schedule: Schedule, noise: Tensor | None = None) -> Tensor:
    """x_t = alpha(t) x0 + sigma(t) z."""
    z = torch.randn_like(x0) if noise is None else noise
    return per_sample(schedule.alpha(t).to(x0.dtype), x0) * x0 + per_sample(schedule.sigma(t).to(x0.dtype), x0) * z
