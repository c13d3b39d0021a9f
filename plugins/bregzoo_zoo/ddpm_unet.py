"""The DDPM UNet (Ho et al. 2020) in diffusers' ``UNet2DModel`` layout, written without diffusers.

Module and parameter names follow diffusers exactly (``down_blocks.1.attentions.0.to_q.weight`` ...), so a
diffusers state dict loads with no renaming beyond the deprecated attention names of old checkpoints. Only
what DDPM-style checkpoints use is supported: positional time embedding, (Attn)DownBlock2D/(Attn)UpBlock2D,
UNetMidBlock2D, conv up/downsampling; ``check_config`` rejects the rest with a clear message.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn

from bregzoo import BregzooError

# google/ddpm-cifar10-32 (DESIGN.md section 4); 35,746,307 parameters.
DDPM_CIFAR10_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "attention_head_dim": None,  # one head per attention layer, as in Ho et al.
    "dropout": 0.0,
}

# diffusers' defaults for keys a config.json may omit, and the values we support for the others.
_DEFAULTS: dict[str, Any] = {
    "center_input_sample": False,
    "attention_head_dim": 8,
    "dropout": 0.0,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "layers_per_block": 2,
}
_REQUIRED: dict[str, tuple[Any, ...]] = {
    "time_embedding_type": ("positional",),
    "act_fn": ("silu",),
    "resnet_time_scale_shift": ("default",),
    "mid_block_type": ("UNetMidBlock2D",),
    "downsample_type": ("conv",),
    "upsample_type": ("conv",),
    "class_embed_type": (None,),
    "num_class_embeds": (None,),
    "attn_norm_num_groups": (None,),
    "time_embedding_dim": (None,),
    "add_attention": (True,),
}


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """A complete config (diffusers defaults filled in); anything this module cannot build is a BregzooError."""
    cfg = {**_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
    for key, allowed in _REQUIRED.items():
        if key in cfg and cfg[key] not in allowed:
            raise BregzooError(f"ddpm-cifar: config {key}={cfg[key]!r} is not supported (only {allowed[0]!r})")
    for key in ("sample_size", "in_channels", "out_channels", "block_out_channels", "down_block_types", "up_block_types"):
        if key not in cfg:
            raise BregzooError(f"ddpm-cifar: config.json lacks {key!r}; is this a diffusers UNet2DModel config?")
    downs, ups = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    if not set(downs) <= {"DownBlock2D", "AttnDownBlock2D"} or not set(ups) <= {"UpBlock2D", "AttnUpBlock2D"}:
        raise BregzooError(f"ddpm-cifar: block types {downs} / {ups} are not supported; only (Attn)Down/UpBlock2D")
    if not len(downs) == len(ups) == len(cfg["block_out_channels"]):
        raise BregzooError("ddpm-cifar: block_out_channels, down_block_types and up_block_types differ in length")
    if any(c % cfg["norm_num_groups"] for c in cfg["block_out_channels"]):
        raise BregzooError(f"ddpm-cifar: every block_out_channels must be divisible by norm_num_groups={cfg['norm_num_groups']}")
    return cfg


def timestep_embedding(t: Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float) -> Tensor:
    """DDPM's sinusoidal embedding of (possibly fractional) timesteps, as diffusers computes it."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - freq_shift))
    ang = t.float()[:, None] * freqs[None]
    emb = torch.cat([ang.cos(), ang.sin()] if flip_sin_to_cos else [ang.sin(), ang.cos()], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepEmbedding(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(c_in, c_out), nn.Linear(c_out, c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv, add the projected time embedding, GroupNorm-SiLU-dropout-conv, residual."""

    def __init__(self, c_in: int, c_out: int, temb: int, groups: int, eps: float, dropout: float, scale: float = 1.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in, eps), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out, eps), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout, self.scale = nn.Dropout(dropout), scale
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + rearrange(self.time_emb_proj(F.silu(emb)), "b c -> b c 1 1")
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.scale


class Attention(nn.Module):
    """Self-attention over pixels with a GroupNorm in front and a residual connection (diffusers' Attention)."""

    def __init__(self, channels: int, head_dim: int | None, groups: int, eps: float, scale: float = 1.0) -> None:
        super().__init__()
        self.heads = channels // head_dim if head_dim else 1
        self.group_norm = nn.GroupNorm(groups, channels, eps)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.group_norm(x), "b c h w -> b (h w) c")
        q, k, v = (rearrange(f(tokens), "b n (heads d) -> b heads n d", heads=self.heads) for f in (self.to_q, self.to_k, self.to_v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b heads n d -> b n (heads d)")
        out = rearrange(self.to_out[0](out), "b (h w) c -> b c h w", h=h, w=w)
        return (out + x) / self.scale


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv; padding 0 means diffusers' asymmetric (right/bottom) zero pad first."""

    def __init__(self, channels: int, padding: int) -> None:
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    """``layers`` resnets (each followed by attention in AttnDownBlock2D), then an optional downsampler."""

    def __init__(self, c_in: int, c_out: int, cfg: dict[str, Any], attend: bool, downsample: bool, temb: int) -> None:
        super().__init__()
        g, eps, drop = cfg["norm_num_groups"], cfg["norm_eps"], cfg["dropout"]
        n = cfg["layers_per_block"]
        self.resnets = nn.ModuleList(ResnetBlock2D(c_in if i == 0 else c_out, c_out, temb, g, eps, drop) for i in range(n))
        if attend:
            self.attentions = nn.ModuleList(Attention(c_out, _head_dim(cfg, c_out), g, eps) for _ in range(n))
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample2D(c_out, cfg["downsample_padding"])])

    def forward(self, h: Tensor, emb: Tensor) -> tuple[Tensor, list[Tensor]]:
        outs = []
        for i, res in enumerate(self.resnets):
            h = res(h, emb)
            if hasattr(self, "attentions"):
                h = self.attentions[i](h)
            outs.append(h)
        if hasattr(self, "downsamplers"):
            h = self.downsamplers[0](h)
            outs.append(h)
        return h, outs


class UpBlock(nn.Module):
    """``layers + 1`` resnets on [h, skip] concatenations (attention after each in AttnUpBlock2D), then upsample."""

    def __init__(self, c_prev: int, c_out: int, c_skip_last: int, cfg: dict[str, Any], attend: bool, upsample: bool, temb: int) -> None:
        super().__init__()
        g, eps, drop = cfg["norm_num_groups"], cfg["norm_eps"], cfg["dropout"]
        n = cfg["layers_per_block"] + 1
        self.resnets = nn.ModuleList(
            ResnetBlock2D((c_prev if i == 0 else c_out) + (c_skip_last if i == n - 1 else c_out), c_out, temb, g, eps, drop)
            for i in range(n)
        )
        if attend:
            self.attentions = nn.ModuleList(Attention(c_out, _head_dim(cfg, c_out), g, eps) for _ in range(n))
        if upsample:
            self.upsamplers = nn.ModuleList([Upsample2D(c_out)])

    def forward(self, h: Tensor, skips: list[Tensor], emb: Tensor) -> Tensor:
        for i, res in enumerate(self.resnets):
            h = res(torch.cat([h, skips.pop()], dim=1), emb)
            if hasattr(self, "attentions"):
                h = self.attentions[i](h)
        if hasattr(self, "upsamplers"):
            h = self.upsamplers[0](h)
        return h


class MidBlock(nn.Module):
    """resnet, attention, resnet (UNetMidBlock2D)."""

    def __init__(self, c: int, cfg: dict[str, Any], temb: int) -> None:
        super().__init__()
        g, eps, drop, scale = cfg["norm_num_groups"], cfg["norm_eps"], cfg["dropout"], cfg["mid_block_scale_factor"]
        self.resnets = nn.ModuleList(ResnetBlock2D(c, c, temb, g, eps, drop, scale) for _ in range(2))
        self.attentions = nn.ModuleList([Attention(c, _head_dim(cfg, c), g, eps, scale)])

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](h, emb)), emb)


def _head_dim(cfg: dict[str, Any], channels: int) -> int | None:
    # diffusers: attention_head_dim None means one head over all channels.
    return cfg["attention_head_dim"] or None


class DDPMUNet(nn.Module):
    """forward(x (B, C, H, W), timesteps (B,) on DDPM's 0..T-1 scale, possibly fractional) -> eps-hat.

    With ``scalar_output`` only the encoder and middle are built, with a pooled linear head (B,): a ratio
    estimator or discriminator that can start from a teacher's encoder weights.
    """

    def __init__(self, config: dict[str, Any], scalar_output: bool = False) -> None:
        super().__init__()
        cfg = self.config = check_config(config)
        chans = list(cfg["block_out_channels"])
        temb = 4 * chans[0]
        self.scalar_output = scalar_output
        self.conv_in = nn.Conv2d(cfg["in_channels"], chans[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(chans[0], temb)
        self.down_blocks = nn.ModuleList(
            DownBlock(chans[max(i - 1, 0)], c, cfg, kind == "AttnDownBlock2D", i < len(chans) - 1, temb)
            for i, (c, kind) in enumerate(zip(chans, cfg["down_block_types"]))
        )
        self.mid_block = MidBlock(chans[-1], cfg, temb)
        if scalar_output:
            self.head_norm = nn.GroupNorm(cfg["norm_num_groups"], chans[-1], cfg["norm_eps"])
            self.head_out = nn.Linear(chans[-1], 1)
            nn.init.zeros_(self.head_out.weight)  # the estimator starts at log r = 0
            nn.init.zeros_(self.head_out.bias)
            return
        rev = chans[::-1]
        self.up_blocks = nn.ModuleList(
            UpBlock(rev[max(i - 1, 0)], c, rev[min(i + 1, len(rev) - 1)], cfg, kind == "AttnUpBlock2D", i < len(rev) - 1, temb)
            for i, (c, kind) in enumerate(zip(rev, cfg["up_block_types"]))
        )
        self.conv_norm_out = nn.GroupNorm(cfg["norm_num_groups"], chans[0], cfg["norm_eps"])
        self.conv_out = nn.Conv2d(chans[0], cfg["out_channels"], 3, padding=1)

    def feature_module(self) -> nn.Module:
        """Trunk features for a ratio head (train.ratio_net=shared): the middle block's output (B, C, h, w)."""
        return self.mid_block

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        cfg = self.config
        if cfg["center_input_sample"]:
            x = 2 * x - 1.0
        t = timesteps.reshape(-1).expand(x.shape[0]) if timesteps.numel() == 1 else timesteps.reshape(-1)
        t_emb = timestep_embedding(t, cfg["block_out_channels"][0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        emb = self.time_embedding(t_emb.to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h, outs = block(h, emb)
            skips += outs
        h = self.mid_block(h, emb)
        if self.scalar_output:
            pooled = reduce(F.silu(self.head_norm(h)), "b c h w -> b c", "mean")
            return rearrange(self.head_out(pooled), "b 1 -> b")
        for block in self.up_blocks:
            h = block(h, skips, emb)
        return self.conv_out(F.silu(self.conv_norm_out(h)))
