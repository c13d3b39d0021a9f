"""EDM (Karras et al. 2022) networks as a backbone and a teacher, both named ``edm``.

- ``bregzoo convert edm-pkl FILE --trust-pickle --out DIR`` turns an official NVlabs/edm network pickle into a
  converted teacher directory (``bregzoo.teacher_dir``): ``teacher.safetensors`` (the state dict with EDM's
  own names, ``model.enc.32x32_conv.weight`` ...) and ``config.json`` (the preconditioning, the network and
  their init kwargs). Everything after that reads only this directory, with safetensors.
- The ``edm`` teacher (``edm:path=DIR``) is EDM's denoiser D(y; s) at the noise level s = sigma/alpha of any
  bregzoo schedule, on y = x/alpha, so it serves VP and EDM schedules alike.
- The ``edm`` backbone is a SongUNet behind ``forward(x, c_noise)`` with bregzoo's c_noise = log(s)/4
  (EDM's own noise label, so a fresh one inside the core ``Denoiser`` is exactly EDMPrecond). With
  ``path=DIR`` it takes the directory's architecture and weights and maps c_noise to the teacher's noise
  label (VP: 999 t(s), VE: log(s/2)); ``scalar_output=True`` keeps the mapping and the encoder, with a
  zero-initialised pooled head: a ratio estimator that starts from the teacher's encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bregzoo import BregzooError, io
from bregzoo.registry import parse_spec
from bregzoo.schedules import Schedule, make_schedule
from bregzoo.teacher import Teacher, per_sample
from bregzoo.teacher_dir import CONVERTED_MARKER, converted_config
from bregzoo_zoo.edm_precond import EDMPrecond, build_precond, edm_sampler_sigma_max, split_init_kwargs
from bregzoo_zoo.edm_unet import param_count
from bregzoo_zoo.unet import int_list

WEIGHTS = "teacher.safetensors"
URL = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/"
HOW_TO_GET = (f"download e.g. {URL}edm-cifar10-32x32-uncond-vp.pkl on a machine with network and convert it with "
              f"'bregzoo convert edm-pkl FILE --trust-pickle --out DIR'")

# train.py's --arch presets (CIFAR-10 sizes); num_blocks=4 and attn_resolutions=[16] are SongUNet's defaults.
ARCHS: dict[str, dict[str, Any]] = {
    "ddpmpp": dict(embedding_type="positional", encoder_type="standard", decoder_type="standard",
                   channel_mult_noise=1, resample_filter=[1, 1], model_channels=128, channel_mult=[2, 2, 2],
                   num_blocks=4, attn_resolutions=[16]),
    "ncsnpp": dict(embedding_type="fourier", encoder_type="residual", decoder_type="standard",
                   channel_mult_noise=2, resample_filter=[1, 3, 3, 1], model_channels=128, channel_mult=[2, 2, 2],
                   num_blocks=4, attn_resolutions=[16]),
}


# -- the converted directory ------------------------------------------------------------------------
def convert_edm_pickle(src: str | Path, out: str | Path, trust_pickle: bool = False, dataset: str | None = None,
                       key: str = "ema") -> dict[str, Any]:
    """Convert an official EDM network pickle into a teacher directory ``out``; returns its config."""
    from bregzoo_zoo.edm_pickle import read_edm_pickle

    src, out = Path(os.path.expanduser(src)), Path(os.path.expanduser(out))
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and converted_config(out) is None)):
        raise BregzooError(f"--out {out} exists and is not a converted teacher directory; choose another --out")
    net = read_edm_pickle(src, trust_pickle, key)
    precond_kwargs, model_kwargs = split_init_kwargs(net.precond, net.init_kwargs)
    if precond_kwargs.get("label_dim", 0):
        raise BregzooError(f"edm-pkl: '{src}' is class-conditional (label_dim={precond_kwargs['label_dim']}); bregzoo "
                           f"distils unconditional teachers: use an -uncond- network, e.g. edm-cifar10-32x32-uncond-vp.pkl")
    network = {"precond": net.precond, "precond_kwargs": precond_kwargs, "model_type": net.model_type,
               "model_kwargs": model_kwargs}
    precond = build_precond(**network)
    _load(precond, net.state_dict, str(src))
    c, r = precond.img_channels, precond.img_resolution
    cfg = {
        CONVERTED_MARKER: 1, "teacher": "edm", "backbone": "edm",
        "dataset": dataset if dataset is not None else ("cifar10" if (c, r) == (3, 32) else None),
        "schedule": "edm", "sampler": {"method": "heun", "steps": 18 if r <= 32 else 40},  # EDM's: 35 / 79 NFE
        "data_shape": [c, r, r], "network": network, "parameters": param_count(precond),
        "source": {"format": "edm-pkl", "file": src.name, "key": key, "sha256": net.sha256},
    }
    with io.atomic_dir(out) as tmp:
        io.save_file(precond.state_dict(), tmp / WEIGHTS, metadata={CONVERTED_MARKER: "1", "source_sha256": net.sha256})
        io.write_json(tmp / "config.json", cfg)
    return cfg


def read_dir(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(the directory, its config.json) of a converted EDM teacher; anything else says what to do."""
    root = Path(os.path.expanduser(path))
    if not root.is_dir():
        raise BregzooError(f"edm: teacher directory '{root}' does not exist; {HOW_TO_GET}")
    cfg = converted_config(root)
    if cfg is None or cfg.get("teacher") != "edm" or not isinstance(cfg.get("network"), dict):
        raise BregzooError(f"edm: '{root}' is not a directory written by 'bregzoo convert edm-pkl'; {HOW_TO_GET}")
    return root, cfg


def load_network(path: str | Path, scalar_output: bool = False, dropout: float = 0.0) -> tuple[Any, dict[str, Any]]:
    """The preconditioned network of a converted directory with its weights (the encoder's only, for a
    scalar-output network, whose head stays zero), and the directory's config. ``dropout`` replaces the
    training run's (EDM's CIFAR-10 networks trained with 0.13), as the DDPM teacher does: the generator and
    the fake denoiser start as copies of the teacher and train without it unless asked."""
    root, cfg = read_dir(path)
    network = dict(cfg["network"], model_kwargs=dict(cfg["network"]["model_kwargs"], dropout=dropout))
    precond = build_precond(**network, scalar_output=scalar_output)
    state = io.load_file(root / WEIGHTS)
    if scalar_output:
        state = {k: v for k, v in state.items() if not k.startswith("model.dec.")}
    _load(precond, state, str(root / WEIGHTS), optional=("model.head_",) if scalar_output else ())
    return precond, cfg


def _load(precond: nn.Module, state: dict[str, Tensor], where: str, optional: tuple[str, ...] = ()) -> None:
    own = precond.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise BregzooError(f"edm: '{where}' has {key} of shape {tuple(value.shape)}, its architecture builds "
                               f"{tuple(own[key].shape)}")
    missing, unexpected = precond.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(optional)] if optional else missing
    if missing or unexpected:
        raise BregzooError(f"edm: the weights in '{where}' do not match its architecture: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]} ({len(missing)} and {len(unexpected)} in all)")


# -- the teacher ----------------------------------------------------------------------------------------
class EDMDenoiser(nn.Module):
    """x0 = D(x_t, t) at continuous t of any bregzoo schedule: EDM's D(y; s) with y = x/alpha, s = sigma/alpha.
    A module of its own so that distillation copies it: the generator and the fake denoiser start as the
    teacher's function, under its own preconditioning."""

    def __init__(self, precond: nn.Module, schedule: Schedule) -> None:
        super().__init__()
        self.precond, self.schedule = precond, schedule

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        td = t.double().to(x.device)
        y = x.double() / per_sample(self.schedule.alpha(td), x)
        return self.precond(y.float(), self.schedule.s(td).float()).to(x.dtype)


class EDMTeacher(Teacher):
    """A converted EDM network as a denoiser; valid up to the noise level EDM's sampler starts from (80)."""

    def __init__(self, precond: nn.Module, schedule: Schedule, config: dict[str, Any] | None = None) -> None:
        super().__init__(schedule, (precond.img_channels, precond.img_resolution, precond.img_resolution))
        self.denoiser = EDMDenoiser(precond, schedule).eval().requires_grad_(False)
        self.config = config or {}

    @property
    def sigma_max(self) -> float:
        return edm_sampler_sigma_max(self.denoiser.precond)

    def denoise(self, x: Tensor, t: Tensor) -> Tensor:
        return self.denoiser(x, t)


def edm_teacher(dataset: Any, schedule: Schedule | None = None, path: str | None = None) -> EDMTeacher:
    """A directory from ``bregzoo convert edm-pkl`` as a teacher (under any schedule; its suggestion: edm)."""
    if path is None:
        raise BregzooError(f"the edm teacher needs its converted directory: edm:path=DIR; {HOW_TO_GET}")
    precond, cfg = load_network(path)
    if schedule is None:  # only a direct call leaves it out; a run passes its own
        name, params = parse_spec(cfg.get("schedule", "edm"))
        schedule = make_schedule(name, **params)
    teacher = EDMTeacher(precond, schedule, cfg)
    want = getattr(dataset, "data_shape", None)
    if want is not None and tuple(want) != teacher.data_shape:
        task = f"; use --task {cfg['dataset']}" if cfg.get("dataset") else "; give the --task it was trained on"
        raise BregzooError(f"edm: the network in '{path}' makes {teacher.data_shape} images but the task has "
                           f"{tuple(want)}{task}")
    return teacher


# -- the backbone ---------------------------------------------------------------------------------------
class EDMBackbone(nn.Module):
    """``forward(x, c_noise)`` with c_noise = log(s)/4, mapped to the preconditioning's own noise label."""

    def __init__(self, precond: nn.Module) -> None:
        super().__init__()
        self.precond = precond

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        c = c_noise.float().reshape(-1).expand(x.shape[0])
        label = c if isinstance(self.precond, EDMPrecond) else self.precond.noise_label(torch.exp(4 * c))
        return self.precond.model(x, label)


def edm_backbone(data_shape: tuple[int, ...], scalar_output: bool = False, path: str | None = None,
                 arch: str = "ddpmpp", model_channels: int | None = None, channel_mult: Any = None,
                 num_blocks: int | None = None, attn_resolutions: Any = None, dropout: float = 0.0) -> EDMBackbone:
    """EDM's SongUNet: DDPM++ (``arch=ddpmpp``, 55.7M parameters at 32x32) or NCSN++, random or from ``path``.

    ``model_channels``, ``channel_mult`` (e.g. 1x2), ``num_blocks`` and ``attn_resolutions`` (e.g. 16, or none)
    shrink it for tests and small runs; they cannot be combined with ``path``, which brings its own.
    """
    sizes = {"model_channels": model_channels, "channel_mult": channel_mult, "num_blocks": num_blocks,
             "attn_resolutions": attn_resolutions}
    if path is not None:
        if any(v is not None for v in sizes.values()) or arch != "ddpmpp":
            raise BregzooError("edm: arch/model_channels/channel_mult/num_blocks/attn_resolutions come from the "
                               "converted directory when path= is given")
        precond, cfg = load_network(path, scalar_output=scalar_output, dropout=dropout)
        _check_shape(data_shape, tuple(cfg["data_shape"]), len(cfg["network"]["model_kwargs"].get("channel_mult", [1, 2, 2, 2])))
        return EDMBackbone(precond)
    if arch not in ARCHS:
        raise BregzooError(f"edm: arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    kwargs = dict(ARCHS[arch])
    if channel_mult is not None:
        kwargs["channel_mult"] = list(int_list(channel_mult, "channel_mult"))
    if attn_resolutions is not None:
        kwargs["attn_resolutions"] = list(int_list(attn_resolutions, "attn_resolutions"))
    kwargs.update({k: v for k, v in (("model_channels", model_channels), ("num_blocks", num_blocks)) if v is not None})
    if not kwargs["channel_mult"] or kwargs["model_channels"] < 4 or kwargs["num_blocks"] < 1:
        raise BregzooError("edm: need at least one channel_mult level, model_channels >= 4 and num_blocks >= 1")
    _check_shape(data_shape, None, len(kwargs["channel_mult"]))
    c, r = data_shape[0], data_shape[1]
    precond = build_precond("EDMPrecond", {"img_resolution": r, "img_channels": c}, "SongUNet",
                            dict(kwargs, dropout=dropout), scalar_output=scalar_output)
    return EDMBackbone(precond)


def _check_shape(data_shape: tuple[int, ...], own: tuple[int, ...] | None, levels: int) -> None:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise BregzooError(f"edm: needs square images (C, H, H), got shape {tuple(data_shape)} (the default task is "
                           f"the 2-D gmm8); give --teacher DIR (from 'bregzoo convert edm-pkl') or an image --task")
    if own is not None and tuple(data_shape) != own:
        raise BregzooError(f"edm: the converted network makes {own} images but the task has {tuple(data_shape)}")
    if data_shape[1] % 2 ** (levels - 1):
        raise BregzooError(f"edm: image size {data_shape[1]} must be divisible by {2 ** (levels - 1)} for {levels} levels")
