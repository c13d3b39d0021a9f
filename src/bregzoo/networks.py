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


class _Preconditioned(nn.Module):
    """A backbone fed the EDM-scaled input c_in y, y = x/alpha, with noise conditioning log(s)/4."""

    def __init__(self, net: nn.Module, schedule: Schedule, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.net, self.schedule, self.sigma_data = net, schedule, float(sigma_data)

    def _inputs(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(s per sample broadcast to x, y = x/alpha, the network's output F(c_in y, log(s)/4))."""
        s = self.schedule.s(t).to(x.dtype)
        y = x / per_sample(self.schedule.alpha(t).to(x.dtype), x)
        s_b = per_sample(s, x)
        c_in = 1 / (s_b.square() + self.sigma_data**2).sqrt()
        return s_b, y, self.net(c_in * y, s.log() / 4)


class Denoiser(_Preconditioned):
    """EDM preconditioning (Karras et al. 2022) in y = x/alpha: D = c_skip y + c_out F(c_in y, log(s)/4)."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self._skip(*self._inputs(x, t))

    def _skip(self, s: Tensor, y: Tensor, out: Tensor) -> Tensor:
        sd2, s2 = self.sigma_data**2, s.square()
        c_skip = sd2 / (s2 + sd2)
        c_out = s * self.sigma_data / (s2 + sd2).sqrt()
        return c_skip * y + c_out * out


class LatentDenoiser(Denoiser):
    """A generator whose latent has extra Gaussian channels beside sigma*eps (``train.extra_latent``).

    The backbone is built for the latent's shape (C + extra, ...) and reads all of it, preconditioned
    like x; the output is its first ``channels`` (the data's C), with the skip connection on those alone.
    An input of the data's own shape cannot carry more entropy than the data has dimensions; the
    extra coordinates let the one-step map spend some on the mixture's modes (its discontinuities).
    """

    def __init__(self, net: nn.Module, schedule: Schedule, sigma_data: float, channels: int) -> None:
        super().__init__(net, schedule, sigma_data)
        self.channels = int(channels)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        s, y, out = self._inputs(x, t)
        return self._skip(s, y[:, : self.channels], out[:, : self.channels])


class RatioNet(_Preconditioned):
    """A time-conditioned log-ratio network: ell(x_t, t) from a scalar-output backbone."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self._inputs(x, t)[2]


def diffuse(x0: Tensor, t: Tensor, schedule: Schedule, noise: Tensor | None = None) -> Tensor:
    """x_t = alpha(t) x0 + sigma(t) z."""
    z = torch.randn_like(x0) if noise is None else noise
    return per_sample(schedule.alpha(t).to(x0.dtype), x0) * x0 + per_sample(schedule.sigma(t).to(x0.dtype), x0) * z
