"""The DDPM CIFAR-10 UNet as a backbone (``ddpm-cifar``) and a local diffusers-layout checkpoint as a teacher (``ddpm``).

A checkpoint directory is what ``google/ddpm-cifar10-32`` holds: ``config.json`` and
``diffusion_pytorch_model.safetensors`` (also accepted: a pipeline folder with them under ``unet/``, and
``diffusion_pytorch_model.bin`` read with ``torch.load(weights_only=True)``), plus optionally
``scheduler_config.json`` (default: 1000 steps, linear beta 1e-4..0.02, epsilon prediction). Nothing is downloaded.

Continuous time -> DDPM timestep: bregzoo's schedules give a noise level s = sigma/alpha at every t. Timestep n of
DDPM has s_n = sqrt((1 - abar_n)/abar_n). The network is fed the *interpolated* fractional timestep n(s) (linear
in log s between neighbouring steps; the sinusoidal embedding accepts fractions), or the nearest integer step with
``time_mapping="nearest"``. In both modes the input is put in DDPM's variance-preserving form at the true s,
x_vp = y / sqrt(1 + s^2) with y = x/alpha, and the x0-prediction is y - s eps-hat. Levels outside
[s_0, s_{T-1}] use the end steps.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bregzoo import BregzooError
from bregzoo.schedules import Schedule
from bregzoo.teacher import Teacher, per_sample
from bregzoo_zoo.ddpm_unet import DDPM_CIFAR10_CONFIG, DDPMUNet
from bregzoo_zoo.unet import int_list

WEIGHTS = "diffusion_pytorch_model.safetensors"
HOW_TO_GET = (
    "download google/ddpm-cifar10-32 on a machine with network (e.g. 'hf download google/ddpm-cifar10-32 "
    "--local-dir DIR') and copy DIR here"
)
_DEPRECATED_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


# -- the checkpoint directory -------------------------------------------------------------------------
def model_dir(path: str | Path) -> Path:
    """The folder holding config.json: ``path`` itself or its ``unet/`` subfolder."""
    p = Path(os.path.expanduser(path))
    for cand in (p, p / "unet"):
        if (cand / "config.json").is_file():
            return cand
    if not p.exists():
        raise BregzooError(f"ddpm: checkpoint directory '{p}' does not exist; {HOW_TO_GET}")
    raise BregzooError(f"ddpm: no config.json in '{p}' or '{p / 'unet'}'; it must be a diffusers UNet2DModel folder: {HOW_TO_GET}")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BregzooError(f"ddpm: cannot read '{path}' ({exc}); it is corrupt: {HOW_TO_GET}") from None
    if not isinstance(data, dict):
        raise BregzooError(f"ddpm: '{path}' is not a JSON object")
    return data


def read_state_dict(folder: Path) -> dict[str, Tensor]:
    """The weights with diffusers' current parameter names (old checkpoints' attention names are renamed)."""
    st, pt = folder / WEIGHTS, folder / "diffusion_pytorch_model.bin"
    try:
        if st.is_file():
            from safetensors.torch import load_file

            sd = load_file(str(st))
        elif pt.is_file():
            sd = torch.load(pt, map_location="cpu", weights_only=True)
        else:
            raise BregzooError(f"ddpm: '{folder}' has config.json but no {WEIGHTS}; {HOW_TO_GET}")
    except BregzooError:
        raise
    except Exception as exc:  # safetensors/pickle errors on a truncated or foreign file
        raise BregzooError(f"ddpm: cannot read the weights in '{folder}' ({type(exc).__name__}: {exc}); {HOW_TO_GET}") from None
    out = {}
    for key, value in sd.items():
        if ".attentions." in key:
            for old, new in _DEPRECATED_ATTENTION.items():
                key = key.replace(old, new)
            if value.ndim == 4:  # 1x1-conv attention projections of the oldest checkpoints
                value = value[:, :, 0, 0]
        out[key] = value
    return out


def load_weights(net: DDPMUNet, state_dict: dict[str, Tensor], where: str) -> None:
    """Load into ``net``; an encoder-only (scalar) net takes the encoder's weights and keeps its own head."""
    if net.scalar_output:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("up_blocks.", "conv_norm_out.", "conv_out."))}
    own = net.state_dict()
    for key, value in state_dict.items():
        if key in own and own[key].shape != value.shape:
            raise BregzooError(f"ddpm: '{where}' has {key} of shape {tuple(value.shape)}, the config builds {tuple(own[key].shape)}")
    missing, unexpected = net.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.startswith("head_")]
    if missing or unexpected:
        raise BregzooError(
            f"ddpm: weights in '{where}' do not match its config: missing {missing[:3]}, unexpected {unexpected[:3]} "
            f"({len(missing)} and {len(unexpected)} in all)"
        )


class DiscreteVP(nn.Module):
    """DDPM's discrete noise levels s_n = sqrt((1 - abar_n)/abar_n) and the map from a level s to a timestep."""

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, beta_schedule: str = "linear") -> None:
        super().__init__()
        n = num_train_timesteps
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float64).square()
        else:
            raise BregzooError(f"ddpm: beta_schedule {beta_schedule!r} is not supported (linear or scaled_linear)")
        abar = torch.cumprod(1 - betas, 0)
        self.register_buffer("log_s", 0.5 * torch.log((1 - abar) / abar), persistent=False)

    def timestep(self, s: Tensor, mode: str = "interpolate") -> Tensor:
        """Fractional (interpolated in log s) or nearest timestep for noise levels s (float64)."""
        log_s = self.log_s.to(s.device)
        ls = s.double().log().clamp(float(log_s[0]), float(log_s[-1]))
        hi = torch.searchsorted(log_s, ls).clamp(1, len(log_s) - 1)
        lo_v, hi_v = log_s[hi - 1], log_s[hi]
        frac = (ls - lo_v) / (hi_v - lo_v)
        if mode == "nearest":
            return (hi - 1 + (frac >= 0.5).long()).double()
        if mode != "interpolate":
            raise BregzooError(f"ddpm: time_mapping must be 'interpolate' or 'nearest', got {mode!r}")
        return (hi - 1).double() + frac

    def s(self, n: Tensor) -> Tensor:
        """Noise level of integer timesteps n."""
        return self.log_s.to(n.device)[n.long()].exp()


def scheduler_settings(folder: Path) -> dict[str, Any]:
    """DDPM scheduler settings next to (or one level above) the model folder; DDPM's defaults otherwise."""
    settings: dict[str, Any] = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear", "prediction_type": "epsilon"}
    for cand in (folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json", folder / "scheduler" / "scheduler_config.json"):
        if cand.is_file():
            found = read_json(cand)
            if found.get("trained_betas") is not None:
                raise BregzooError(f"ddpm: '{cand}' uses trained_betas, which is not supported")
            settings.update({k: found[k] for k in settings if found.get(k) is not None})
            break
    if settings["prediction_type"] not in ("epsilon", "sample", "v_prediction"):
        raise BregzooError(f"ddpm: prediction_type {settings['prediction_type']!r} is not supported")
    return settings


# -- the backbone ---------------------------------------------------------------------------------------
class DDPMBackbone(nn.Module):
    """``forward(x, c_noise)`` on the DDPM UNet: c_noise is log(s)/4 (``time_input="sigma"``, what bregzoo's
    Denoiser/RatioNet pass; mapped to DDPM's fractional timestep) or a DDPM timestep (``"timestep"``)."""

    def __init__(self, unet: DDPMUNet, table: DiscreteVP, time_input: str = "sigma") -> None:
        super().__init__()
        if time_input not in ("sigma", "timestep"):
            raise BregzooError(f"ddpm-cifar: time_input must be 'sigma' or 'timestep', got {time_input!r}")
        self.unet, self.table, self.time_input = unet, table, time_input

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        t = self.table.timestep(torch.exp(4 * c_noise.double())) if self.time_input == "sigma" else c_noise
        return self.unet(x, t.to(torch.float32))


def ddpm_cifar(
    data_shape: tuple[int, ...],
    scalar_output: bool = False,
    path: str | None = None,
    channels: int | str | tuple[int, ...] | None = None,
    layers: int | None = None,
    groups: int | None = None,
    dropout: float = 0.0,
    time_input: str = "sigma",
) -> DDPMBackbone:
    """The DDPM CIFAR-10 UNet (35.7M parameters), random or loaded from a diffusers folder ``path``.

    ``channels`` (e.g. 32x32x32x32), ``layers`` and ``groups`` shrink the same block layout (attention at the
    second level), for tests and small runs; they cannot be combined with ``path``.
    """
    if path is not None and (channels, layers, groups) != (None, None, None):
        raise BregzooError("ddpm-cifar: channels/layers/groups come from the checkpoint when path= is given")
    if path is not None:
        folder = model_dir(path)
        config, settings = read_json(folder / "config.json"), scheduler_settings(folder)
    else:
        config = dict(DDPM_CIFAR10_CONFIG, in_channels=data_shape[0], out_channels=data_shape[0], dropout=dropout)
        if channels is not None:
            chans = int_list(channels, "channels")
            n = len(chans)
            attn_level = min(1, n - 1)  # DDPM attends at 16x16: the second of four levels
            config["block_out_channels"] = list(chans)
            config["down_block_types"] = ["AttnDownBlock2D" if i == attn_level else "DownBlock2D" for i in range(n)]
            config["up_block_types"] = ["AttnUpBlock2D" if i == n - 1 - attn_level else "UpBlock2D" for i in range(n)]
        config.update({k: v for k, v in (("layers_per_block", layers), ("norm_num_groups", groups)) if v is not None})
        settings = {}
    _check_shape(data_shape, config, "ddpm-cifar")
    unet = DDPMUNet(dict(config, dropout=dropout), scalar_output=scalar_output)
    if path is not None:
        load_weights(unet, read_state_dict(folder), str(folder))
    table = DiscreteVP(**{k: v for k, v in settings.items() if k != "prediction_type"})
    return DDPMBackbone(unet, table, time_input)


def _check_shape(data_shape: tuple[int, ...], config: dict[str, Any], who: str) -> None:
    levels = len(config["block_out_channels"])
    if len(data_shape) != 3:
        raise BregzooError(
            f"{who}: needs image data (C, H, W), got shape {tuple(data_shape)} (the default task is the 2-D gmm8); "
            f"give the teacher it distills, --teacher DIR (a diffusers DDPM folder such as google/ddpm-cifar10-32, "
            f"downloaded beforehand), or --task cifar10 --data DIR (the cifar-10-batches-bin folder)")
    c, h, w = data_shape
    if c != config["in_channels"] or c != config["out_channels"]:
        raise BregzooError(f"{who}: the data has {c} channels but the network takes {config['in_channels']}")
    if h % 2 ** (levels - 1) or w % 2 ** (levels - 1):
        raise BregzooError(f"{who}: image size {h}x{w} must be divisible by {2 ** (levels - 1)} for {levels} levels")


# -- the teacher ----------------------------------------------------------------------------------------
class DDPMDenoiser(nn.Module):
    """x0 = D(x_t, t) of a DDPM UNet at continuous t of any bregzoo schedule (the eps -> x0 map below). A module
    of its own so that distillation can copy it: the generator and the fake denoiser then start as the
    teacher's function, not merely its weights under another preconditioning."""

    def __init__(self, unet: DDPMUNet, table: DiscreteVP, schedule: Schedule, prediction_type: str = "epsilon", time_mapping: str = "interpolate") -> None:
        super().__init__()
        table.timestep(torch.ones(1), time_mapping)  # validates the mode now rather than at the first call
        self.net, self.table, self.schedule = unet, table, schedule
        self.prediction_type, self.time_mapping = prediction_type, time_mapping

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        td = t.double().to(x.device)
        s = self.schedule.s(td)
        y = x.double() / per_sample(self.schedule.alpha(td), x)
        k = per_sample(1 / torch.sqrt(1 + s.square()), x)  # DDPM's alpha at level s; its sigma is s*k
        x_vp = y * k
        out = self.net(x_vp.to(x.dtype), self.table.timestep(s, self.time_mapping).float()).double()
        if self.prediction_type == "epsilon":
            x0 = y - per_sample(s, x) * out
        elif self.prediction_type == "sample":
            x0 = out
        else:  # v = alpha eps - sigma x0  =>  x0 = alpha x_t - sigma v
            x0 = k * x_vp - per_sample(s, x) * k * out
        return x0.to(x.dtype)


class DDPMTeacher(Teacher):
    """A diffusers DDPM checkpoint (eps-prediction on T discrete steps) as a denoiser x0 = (x - sigma eps)/alpha
    at continuous t of any bregzoo schedule; see the module docstring for the timestep mapping."""

    def __init__(self, unet: DDPMUNet, table: DiscreteVP, schedule: Schedule, prediction_type: str = "epsilon", time_mapping: str = "interpolate") -> None:
        cfg = unet.config
        super().__init__(schedule, (cfg["in_channels"], cfg["sample_size"], cfg["sample_size"]))
        self.denoiser = DDPMDenoiser(unet, table, schedule, prediction_type, time_mapping).eval().requires_grad_(False)

    @property
    def net(self) -> DDPMUNet:
        return self.denoiser.net

    @property
    def table(self) -> DiscreteVP:
        return self.denoiser.table

    @property
    def prediction_type(self) -> str:
        return self.denoiser.prediction_type

    @property
    def time_mapping(self) -> str:
        return self.denoiser.time_mapping

    def denoise(self, x: Tensor, t: Tensor) -> Tensor:
        return self.denoiser(x, t)


def ddpm(dataset: Any, schedule: Schedule, path: str | None = None, time_mapping: str = "interpolate") -> DDPMTeacher:
    """A local diffusers-format DDPM checkpoint folder (e.g. google/ddpm-cifar10-32) as a teacher."""
    if path is None:
        raise BregzooError(f"the ddpm teacher needs its checkpoint folder: ddpm:path=DIR; {HOW_TO_GET}")
    folder = model_dir(path)
    config, settings = read_json(folder / "config.json"), scheduler_settings(folder)
    unet = DDPMUNet(dict(config, dropout=0.0))
    load_weights(unet, read_state_dict(folder), str(folder))
    table = DiscreteVP(**{k: v for k, v in settings.items() if k != "prediction_type"})
    teacher = DDPMTeacher(unet, table, schedule, settings["prediction_type"], time_mapping)
    want = getattr(dataset, "data_shape", None)
    if want is not None and tuple(want) != teacher.data_shape:
        raise BregzooError(f"ddpm: the checkpoint makes {teacher.data_shape} images but the dataset has {tuple(want)}")
    return teacher


def param_count(module: nn.Module) -> int:
    """Number of parameters (35,746,307 for the DDPM CIFAR-10 UNet)."""
    return sum(p.numel() for p in module.parameters())
