"""A time-conditioned residual MLP for low-dimensional data: denoiser, generator or ratio estimator."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bregzoo import BregzooError


def fourier_features(c: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of the noise conditioning c (B,) -> (B, dim)."""
    freqs = torch.exp(torch.linspace(0, math.log(1000.0), dim // 2, device=c.device, dtype=c.dtype))
    ang = c[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width))
        self.film = nn.Linear(width, 2 * width)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb).chunk(2, dim=1)
        return h + self.net(h * (1 + scale) + shift)


class MLP(nn.Module):
    """forward(x (B, d), c_noise (B,)) -> (B, d), or (B,) with scalar_output."""

    def __init__(self, dim: int, width: int = 128, depth: int = 3, scalar_output: bool = False,
                 fourier: int = 0, fourier_scale: float = 1.0) -> None:
        super().__init__()
        self.width = width
        # Optional random Fourier features of x (Tancik et al. 2020): a plain MLP is slow to learn the
        # sharp low-noise denoisers of well-separated 2-D modes (spectral bias). A fixed seed keeps
        # them reproducible; they are a buffer, so they travel in the state dict (only when used, so
        # checkpoints of the plain MLP keep their keys).
        freqs = torch.randn(dim, fourier, generator=torch.Generator().manual_seed(0)) * fourier_scale
        self.register_buffer("freqs", freqs if fourier else None)
        self.inp = nn.Linear(dim + 2 * fourier, width)
        self.emb = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, 1 if scalar_output else dim))
        self.scalar_output = scalar_output

    def feature_module(self) -> nn.Module:
        """Trunk features for a ratio head (train.ratio_net=shared): the last residual block's output (B, width)."""
        return self.blocks[-1] if len(self.blocks) else self.inp

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        emb = self.emb(fourier_features(c_noise.to(x.dtype), self.width))
        if self.freqs is not None:
            ang = (2 * math.pi) * x @ self.freqs.to(x.dtype)
            x = torch.cat([x, ang.sin(), ang.cos()], dim=1)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        out = self.out(h)
        return out.squeeze(1) if self.scalar_output else out


def mlp(data_shape: tuple[int, ...], scalar_output: bool = False, width: int = 128, depth: int = 3,
        fourier: int = 0, fourier_scale: float = 1.0) -> MLP:
    """The residual MLP backbone for vector data."""
    if len(data_shape) != 1:
        raise BregzooError(f"the mlp backbone needs vector data, got shape {tuple(data_shape)}; use 'unet' for images")
    if width < 2 or depth < 0:
        raise BregzooError(f"mlp: width must be >= 2 and depth >= 0, got width={width}, depth={depth}")
    if fourier < 0 or fourier_scale <= 0:
        raise BregzooError(f"mlp: fourier must be >= 0 and fourier_scale > 0, got {fourier}, {fourier_scale}")
    return MLP(data_shape[0], width, depth, scalar_output, fourier, fourier_scale)
