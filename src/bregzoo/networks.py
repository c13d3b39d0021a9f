"""Wrappers that turn a backbone ``net(x, c_noise)`` into a denoiser or a log-ratio estimator.

Backbone convention (every backbone plugin follows it): ``factory(data_shape, scalar_output=False,
**options)`` returns an ``nn.Module`` with ``forward(x, c_noise)``, x of shape (B, *data_shape) and
c_noise of shape (B,). It returns (B, *data_shape), or (B,) when ``scalar_output=True``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from einops import rearrange, reduce
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


# -- a ratio estimator on the fake denoiser's trunk (train.ratio_net = "shared") ----------------------

class _Stop(Exception):
    """Raised by a FeatureTap's hook to end a forward pass once the features exist."""


def feature_module(denoiser: nn.Module) -> nn.Module | None:
    """The submodule whose output is ``denoiser``'s trunk features, or None when its backbone names none.

    A backbone exposes its features by a method ``feature_module()`` that returns that submodule (the
    MLP's last residual block, a UNet's bottleneck); the first module in ``denoiser`` that has one names it,
    so a plugin's wrapper (a teacher's eps -> x0 denoiser) needs nothing of its own.
    """
    for m in denoiser.modules():
        find = getattr(m, "feature_module", None)
        if callable(find) and m is not denoiser:
            return find()
    return None


class FeatureTap:
    """Captures the trunk features of a denoiser's forward pass, by a forward hook on its feature module.

    ``with tap.capture():`` around a denoiser call leaves the features in ``tap.value``; with
    ``stop=True`` the call ends as soon as they exist (the decoder is not run) and raises nothing.
    Outside ``capture`` the hook does nothing. Works through DDP and ``torch.compile`` wrappers alike,
    since it sits on the module itself.
    """

    def __init__(self, denoiser: nn.Module) -> None:
        module = feature_module(denoiser)
        if module is None:
            raise ValueError("the denoiser's backbone exposes no trunk features (no feature_module())")
        self.value: Tensor | None = None
        self._on, self._stop = False, False
        # Run eagerly under torch.compile (train.compile): a compiled graph would drop the hook's side
        # effect on this object; the graph breaks at the feature module instead.
        self._handle = module.register_forward_hook(torch.compiler.disable(self._hook))

    def remove(self) -> None:
        self._handle.remove()

    def _hook(self, module: nn.Module, args: Any, out: Tensor) -> None:
        if self._on:
            self.value = out
            if self._stop:
                raise _Stop

    @contextlib.contextmanager
    def capture(self, stop: bool = False):
        self.value, self._on, self._stop = None, True, stop
        try:
            yield self
        except _Stop:
            pass
        finally:
            self._on = self._stop = False

    def features(self, denoiser: Callable[..., Any], x: Tensor, t: Tensor) -> Tensor:
        """The trunk features of ``denoiser(x, t)``, without running what comes after them."""
        with self.capture(stop=True):
            denoiser(x, t)
        assert self.value is not None
        return self.value


class FeatureRatioHead(nn.Module):
    """log r = ell(x_t, t) from the fake denoiser's trunk features: DMD2 puts its GAN classifier there, so the
    discriminator costs a small head rather than a network (Yin et al. 2024, "Improved Distribution Matching
    Distillation", §4.3). Image features (B, C, H, W) go through one norm-SiLU-conv first and are mean-pooled
    over space; then norm-SiLU-linear to one number (the separate estimator's own output layer), with
    ``hidden`` > 0 a hidden layer of that width before it; it starts at log r = 0. The trunk's features
    are conditioned on the noise level already (its time embedding), so the head takes no t of its own.
    """

    def __init__(self, feature_shape: tuple[int, ...], hidden: int = 0) -> None:
        super().__init__()
        c = int(feature_shape[0])
        self.conv = (nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1))
                     if len(feature_shape) == 3 else None)
        layers: list[nn.Module] = [nn.LayerNorm(c), nn.SiLU()]
        if hidden:
            layers += [nn.Linear(c, hidden), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden or c, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, feats: Tensor, t: Tensor) -> Tensor:
        """ell (B,) from features (B, C, ...) of the trunk at times t (B,) (t: the RatioNet signature)."""
        if self.conv is not None:
            feats = reduce(self.conv(feats), "b c ... -> b c", "mean")
        elif feats.ndim > 2:
            feats = reduce(feats, "b c ... -> b c", "mean")
        return rearrange(self.net(feats), "b 1 -> b")


def _groups(channels: int) -> int:
    g = max(1, min(32, channels // 4))
    while channels % g:
        g -= 1
    return g


@torch.no_grad()
def feature_shape(denoiser: nn.Module, data_shape: tuple[int, ...], t: float) -> tuple[int, ...]:
    """The per-sample shape of ``denoiser``'s trunk features, from one forward pass on one zero input at time t."""
    tap = FeatureTap(denoiser)
    try:
        x = torch.zeros(1, *data_shape, device=next(denoiser.parameters()).device)
        return tuple(tap.features(denoiser, x, torch.full((1,), float(t), device=x.device)).shape[1:])
    finally:
        tap.remove()
