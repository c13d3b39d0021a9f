"""A compact time-conditioned UNet for 8x8 to 32x32 images (DDPM layout, FiLM time conditioning, einops).

``scalar_output=True`` builds the encoder half only plus a pooled linear head: a time-conditioned conv
estimator of log r for images. Options are given on the command line as e.g.
``unet:channels=32,mults=1x2,blocks=1,attn=8`` (lists are written with 'x' because ',' separates options).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn

from bregzoo import BregzooError
from bregzoo_zoo.mlp import fourier_features


def int_list(value: object, option: str) -> tuple[int, ...]:
    """An option given as 2, (1, 2), [1, 2], '1x2' or '1 2' -> (1, 2); None or 'none' -> ()."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return ()
    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        parts = [p for p in re.split(r"[x\s/;]+", value.strip()) if p]
        if all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    elif isinstance(value, Sequence) and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise BregzooError(f"option {option}={value!r} must be integers written like 1x2x2 (or a list in Python)")


def groups_for(channels: int) -> int:
    """GroupNorm groups: up to 32, at least 4 channels a group where possible, dividing ``channels``."""
    g = max(1, min(32, channels // 4))
    while channels % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding as a FiLM scale/shift (EDM's DDPM++ block)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups_for(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups_for(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity on its skip path
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.film(emb), "b (two c) -> two b c 1 1", two=2)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(self.drop(h))


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(groups_for(channels), channels)
        self.qkv, self.proj = nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three n d) h w -> three b n (h w) d", three=3, n=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(rearrange(out, "b n (h w) d -> b (n d) h w", h=h, w=w))


class Level(nn.Module):
    """A residual block, then attention when this resolution has it."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attend: bool) -> None:
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, dropout)
        self.attn = Attention(c_out) if attend else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attn(self.res(x, emb))


class UNet(nn.Module):
    """forward(x (B, C, H, W), c_noise (B,)) -> (B, C, H, W), or (B,) with scalar_output."""

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        channels: int = 64,
        mults: tuple[int, ...] = (1, 2, 2),
        blocks: int = 2,
        attn: tuple[int, ...] = (16,),
        dropout: float = 0.0,
        scalar_output: bool = False,
    ) -> None:
        super().__init__()
        c_img, size = data_shape[0], data_shape[1]
        emb_dim = 4 * channels
        self.channels, self.scalar_output = channels, scalar_output
        self.emb = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(c_img, channels, 3, padding=1)

        # Encoder: remember every skip's width for the decoder.
        self.down, skips, c, res = nn.ModuleList(), [channels], channels, size
        for i, m in enumerate(mults):
            for _ in range(blocks):
                self.down.append(Level(c, channels * m, emb_dim, dropout, res in attn))
                c = channels * m
                skips.append(c)
            if i < len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([Level(c, c, emb_dim, dropout, True), Level(c, c, emb_dim, dropout, False)])

        if scalar_output:  # conv estimator: pooled features -> one number, starting at log r = 0
            self.head = nn.Sequential(nn.GroupNorm(groups_for(c), c), nn.SiLU())
            self.head_out = nn.Linear(c, 1)
            nn.init.zeros_(self.head_out.weight)
            nn.init.zeros_(self.head_out.bias)
            return

        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                self.up.append(Level(c + skips.pop(), channels * m, emb_dim, dropout, res in attn))
                c = channels * m
            if i > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
                res *= 2
        self.norm_out = nn.GroupNorm(groups_for(c), c)
        self.conv_out = nn.Conv2d(c, c_img, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the network starts at F = 0: the EDM denoiser starts at c_skip * y
        nn.init.zeros_(self.conv_out.bias)

    def feature_module(self) -> nn.Module:
        """Trunk features for a ratio head (train.ratio_net=shared): the bottleneck's output (B, C, h, w)."""
        return self.mid[-1]

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        emb = self.emb(fourier_features(c_noise.to(x.dtype).reshape(-1), self.channels))
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Level) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        if self.scalar_output:
            pooled = reduce(self.head(h), "b c h w -> b c", "mean")
            return rearrange(self.head_out(pooled), "b 1 -> b")
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], 1), emb) if isinstance(layer, Level) else layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def unet(
    data_shape: tuple[int, ...],
    scalar_output: bool = False,
    channels: int = 64,
    mults: int | str | Sequence[int] = (1, 2, 2),
    blocks: int = 2,
    attn: int | str | Sequence[int] | None = (16,),
    dropout: float = 0.0,
) -> UNet:
    """Compact time-conditioned UNet; ``attn`` lists the resolutions (e.g. 16 for 16x16) with self-attention."""
    mults_t, attn_t = int_list(mults, "mults"), int_list(attn, "attn")
    if len(data_shape) != 3:
        raise BregzooError(f"unet needs image data (C, H, W), got shape {tuple(data_shape)}; use 'mlp' for vectors")
    _, h, w = data_shape
    levels = len(mults_t)
    if not mults_t or min(mults_t) < 1 or channels < 1 or blocks < 1:
        raise BregzooError(f"unet: need mults >= 1, channels >= 1, blocks >= 1; got mults={mults_t}, channels={channels}, blocks={blocks}")
    if h != w or h % 2 ** (levels - 1):
        raise BregzooError(
            f"unet: image size {h}x{w} must be square and divisible by {2 ** (levels - 1)} for {levels} levels "
            f"(mults={'x'.join(map(str, mults_t))}); use fewer levels, e.g. mults=1x2"
        )
    if not 0 <= dropout < 1:
        raise BregzooError(f"unet: dropout must be in [0, 1), got {dropout}")
    return UNet(tuple(data_shape), channels, mults_t, blocks, attn_t, float(dropout), scalar_output)
