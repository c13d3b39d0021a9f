"""The DDPM++ / NCSN++ UNet of EDM (Karras et al. 2022, "SongUNet"), written for bregzoo.

Class, attribute and constructor-argument names are those of NVlabs/edm's ``training/networks.py``, so the
state dict of an official network (``model.map_layer0.weight``, ``model.enc.32x32_conv.weight``,
``model.enc.16x16_down.conv0.resample_filter``, ...) loads with no renaming and the init kwargs stored in an
official pickle build this module unchanged. The weight initialisation follows the same modes and scales.

The CIFAR-10 DDPM++ configuration (model_channels=128, channel_mult=[2,2,2], num_blocks=4, attention at
16x16) has 55,732,739 parameters, and 55,733,891 with the 9-dim augmentation-label layer that EDM's CIFAR-10
training adds (``augment_dim=9``; the released pickles have it). NCSN++: 56,395,523 / 56,397,827.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor, nn

from bregzoo import BregzooError


def random_weight(shape: Sequence[int], mode: str, fan_in: int, fan_out: int) -> Tensor:
    """Random weights in one of EDM's four init modes."""
    if mode == "xavier_uniform":
        return math.sqrt(6 / (fan_in + fan_out)) * (2 * torch.rand(*shape) - 1)
    if mode == "xavier_normal":
        return math.sqrt(2 / (fan_in + fan_out)) * torch.randn(*shape)
    if mode == "kaiming_uniform":
        return math.sqrt(3 / fan_in) * (2 * torch.rand(*shape) - 1)
    if mode == "kaiming_normal":
        return math.sqrt(1 / fan_in) * torch.randn(*shape)
    raise BregzooError(f"edm: unknown init mode {mode!r}")


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, init_mode: str = "kaiming_normal",
                 init_weight: float = 1.0, init_bias: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        fans = dict(mode=init_mode, fan_in=in_features, fan_out=out_features)
        self.weight = nn.Parameter(random_weight([out_features, in_features], **fans) * init_weight)
        self.bias = nn.Parameter(random_weight([out_features], **fans) * init_bias) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))



class Conv2d(nn.Module):
    """A conv with optional 2x up/downsampling by a separable FIR filter (kernel 0: resampling only).

    The filter is a persistent buffer (``resample_filter``) when the layer resamples, as in EDM's state dict.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter: Sequence[float] = (1, 1), fused_resample: bool = False,
                 init_mode: str = "kaiming_normal", init_weight: float = 1.0, init_bias: float = 0.0) -> None:
        if up and down:
            raise BregzooError("edm: a Conv2d cannot both up- and downsample")
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fans = dict(mode=init_mode, fan_in=in_channels * kernel * kernel, fan_out=out_channels * kernel * kernel)
        self.weight = nn.Parameter(random_weight([out_channels, in_channels, kernel, kernel], **fans) * init_weight) if kernel else None
        self.bias = nn.Parameter(random_weight([out_channels], **fans) * init_bias) if kernel and bias else None
        f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        f2d = rearrange(torch.outer(f, f) / f.sum().square(), "h w -> 1 1 h w")
        self.register_buffer("resample_filter", f2d if up or down else None)

    def forward(self, x: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.to(x.dtype)
        f = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (f.shape[-1] - 1) // 2 if f is not None else 0
        if self.fused_resample and self.up and w is not None:
            x = _upsample(x, f, self.in_channels, max(f_pad - w_pad, 0))
            x = F.conv2d(x, w, padding=max(w_pad - f_pad, 0))
        elif self.fused_resample and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile([self.out_channels, 1, 1, 1]), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = _upsample(x, f, self.in_channels, f_pad)
            if self.down:
                x = F.conv2d(x, f.tile([self.in_channels, 1, 1, 1]), groups=self.in_channels, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        if self.bias is not None:
            x = x + rearrange(self.bias.to(x.dtype), "c -> 1 c 1 1")
        return x


def _upsample(x: Tensor, f: Tensor, channels: int, padding: int) -> Tensor:
    # A depthwise transposed conv with the filter scaled by 4 (the stride's area) keeps the mean.
    return F.conv_transpose2d(x, (4 * f).tile([channels, 1, 1, 1]), groups=channels, stride=2, padding=padding)


class GroupNorm(nn.Module):
    """GroupNorm with at most ``num_groups`` groups of at least ``min_channels_per_group`` channels."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        if self.num_groups < 1 or num_channels % self.num_groups:
            raise BregzooError(f"edm: {num_channels} channels cannot form GroupNorm groups of >= {min_channels_per_group}; "
                               f"use model_channels of at least 4 and a multiple of 4")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class UNetBlock(nn.Module):
    """Residual block (norm-SiLU-conv, add the embedding, norm-SiLU-dropout-conv) with optional resampling and
    one self-attention layer after it; outputs are scaled by ``skip_scale`` after each residual sum."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, up: bool = False, down: bool = False,
                 attention: bool = False, num_heads: int | None = None, channels_per_head: int = 64,
                 dropout: float = 0.0, skip_scale: float = 1.0, eps: float = 1e-5,
                 resample_filter: Sequence[float] = (1, 1), resample_proj: bool = False, adaptive_scale: bool = True,
                 init: dict | None = None, init_zero: dict | None = None, init_attn: dict | None = None) -> None:
        super().__init__()
        init = init or {}
        init_zero = {"init_weight": 0} if init_zero is None else init_zero
        self.in_channels, self.out_channels, self.emb_channels = in_channels, out_channels, emb_channels
        self.num_heads = 0 if not attention else num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, skip_scale, adaptive_scale
        resample = dict(up=up, down=down, resample_filter=resample_filter)

        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, **resample, **init)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1), **init)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, **init_zero)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, **resample, **init)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1, **(init if init_attn is None else init_attn))
            self.proj = Conv2d(out_channels, out_channels, 1, **init_zero)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = rearrange(self.affine(emb), "b c -> b c 1 1").to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(shift + self.norm1(x) * (scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training))
        x = (x + (orig if self.skip is None else self.skip(orig))) * self.skip_scale
        if self.num_heads:
            x = (self.proj(self._attend(self.norm2(x))) + x) * self.skip_scale
        return x

    def _attend(self, x: Tensor) -> Tensor:
        """Softmax attention over pixels; qkv's channels are laid out (head, channel, q/k/v) as in EDM."""
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(x), "b (n c three) h w -> three (b n) (h w) c", n=self.num_heads, three=3)
        out = F.scaled_dot_product_attention(q, k, v)
        return rearrange(out, "(b n) (h w) c -> b (n c) h w", n=self.num_heads, h=h, w=w)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding [cos, sin] at frequencies (1/max_positions)^(i/(n/2 - endpoint))."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False) -> None:
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, x: Tensor) -> Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        ang = torch.outer(x, ((1 / self.max_positions) ** freqs).to(x.dtype))
        return torch.cat([ang.cos(), ang.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features [cos, sin] of 2 pi freqs x; ``freqs`` is a persistent buffer (NCSN++)."""

    def __init__(self, num_channels: int, scale: float = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: Tensor) -> Tensor:
        ang = torch.outer(x, (2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([ang.cos(), ang.sin()], dim=1)


class SongUNet(nn.Module):
    """DDPM++ (``embedding_type='positional'``, standard encoder) or NCSN++ (``'fourier'``, residual encoder).

    ``forward(x, noise_labels, class_labels=None, augment_labels=None)`` -> F_x, the raw network output that a
    preconditioning (``bregzoo_zoo.edm``) turns into a denoiser. ``scalar_output=True`` is bregzoo's own
    addition: only the mapping and the encoder are built, followed by GroupNorm -> SiLU -> mean pool -> a
    zero-initialised linear layer (``head_norm``, ``head_out``), a log-ratio estimator that starts at 0.
    """

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, model_channels: int = 128, channel_mult: Sequence[int] = (1, 2, 2, 2),
                 channel_mult_emb: int = 4, num_blocks: int = 4, attn_resolutions: Sequence[int] = (16,),
                 dropout: float = 0.10, label_dropout: float = 0, embedding_type: str = "positional",
                 channel_mult_noise: int = 1, encoder_type: str = "standard", decoder_type: str = "standard",
                 resample_filter: Sequence[float] = (1, 1), scalar_output: bool = False) -> None:
        _check_choice("embedding_type", embedding_type, ("positional", "fourier"))
        _check_choice("encoder_type", encoder_type, ("standard", "skip", "residual"))
        _check_choice("decoder_type", decoder_type, ("standard", "skip"))
        super().__init__()
        self.label_dropout, self.scalar_output = label_dropout, scalar_output
        emb_channels, noise_channels = model_channels * channel_mult_emb, model_channels * channel_mult_noise
        init = dict(init_mode="xavier_uniform")
        init_zero = dict(init_mode="xavier_uniform", init_weight=1e-5)
        init_attn = dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))
        block = dict(emb_channels=emb_channels, num_heads=1, dropout=dropout, skip_scale=math.sqrt(0.5), eps=1e-6,
                     resample_filter=resample_filter, resample_proj=True, adaptive_scale=False,
                     init=init, init_zero=init_zero, init_attn=init_attn)

        # Mapping: noise level (and optional class / augmentation labels) -> embedding.
        self.map_noise = (PositionalEmbedding(noise_channels, endpoint=True) if embedding_type == "positional"
                          else FourierEmbedding(noise_channels))
        self.map_label = Linear(label_dim, noise_channels, **init) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False, **init) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels, **init)
        self.map_layer1 = Linear(emb_channels, emb_channels, **init)

        # Encoder: per level, a downsampling block (after the first level), then num_blocks blocks.
        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cout = model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(in_channels, cout, 3, **init)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True, resample_filter=resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1, **init)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(caux, cout, 3, down=True, resample_filter=resample_filter,
                                                                   fused_resample=True, **init)
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        if scalar_output:
            self.head_norm = GroupNorm(cout, eps=1e-6)
            self.head_out = nn.Linear(cout, 1)
            nn.init.zeros_(self.head_out.weight)
            nn.init.zeros_(self.head_out.bias)
            return
        skips = [b.out_channels for name, b in self.enc.items() if "aux" not in name]

        # Decoder: the bottom level starts with two blocks (the first with attention); the others with an
        # upsampling block. num_blocks + 1 blocks take the encoder's skips; a skip decoder adds an RGB path.
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(out_channels, out_channels, 0, up=True, resample_filter=resample_filter)
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3, **init_zero)

    def embed(self, noise_labels: Tensor, class_labels: Tensor | None = None, augment_labels: Tensor | None = None) -> Tensor:
        emb = self.map_noise(noise_labels)
        emb = rearrange(rearrange(emb, "b (two c) -> b two c", two=2).flip(1), "b two c -> b (two c)")  # [sin, cos]
        if self.map_label is not None:
            labels = class_labels if class_labels is not None else torch.zeros(1, self.map_label.in_features, device=emb.device)
            if self.training and self.label_dropout:
                labels = labels * (torch.rand(emb.shape[0], 1, device=emb.device) >= self.label_dropout).to(labels.dtype)
            emb = emb + self.map_label(labels * math.sqrt(self.map_label.in_features))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        return F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

    def feature_module(self) -> nn.Module:
        """Trunk features for a ratio head (train.ratio_net=shared): the encoder's last block (B, C, h, w)."""
        return [block for name, block in self.enc.items() if "aux" not in name][-1]

    def forward(self, x: Tensor, noise_labels: Tensor, class_labels: Tensor | None = None,
                augment_labels: Tensor | None = None) -> Tensor:
        emb = self.embed(noise_labels, class_labels, augment_labels).to(x.dtype)
        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)
        if self.scalar_output:
            pooled = reduce(F.silu(self.head_norm(x)), "b c h w -> b c", "mean")
            return rearrange(self.head_out(pooled), "b 1 -> b")
        aux = tmp = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


def _check_choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BregzooError(f"edm: {option}={value!r} is not one of {', '.join(allowed)}")


def param_count(module: nn.Module) -> int:
    """Number of parameters (55,733,891 for the released DDPM++ CIFAR-10 networks)."""
    return sum(p.numel() for p in module.parameters())
