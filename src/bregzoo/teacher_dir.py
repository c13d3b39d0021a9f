"""The bregzoo teacher directory that ``bregzoo teach`` writes, and the teacher it loads back as.

    <dir>/config.json            {"bregzoo_teacher": 1, dataset, backbone, schedule, sigma_data, data_shape,
                                  sampler: {method, steps}, step, train: {...}}
    <dir>/teacher.safetensors    the EMA weights of the Denoiser (what is sampled and distilled)
    <dir>/teacher_raw.safetensors   the raw (non-EMA) weights at the last step
    <dir>/samples.png            a grid of teacher samples at the configured sampler settings
    <dir>/metrics.jsonl          the training loss log
    <dir>/checkpoints/step-NNNNNNN/   full training state for ``bregzoo teach --resume``

Weights load only through safetensors. The network is rebuilt from the backbone spec through the
backbone registry, so loading needs nothing but this directory and the installed plugins.

A *converted* teacher directory holds a third-party checkpoint that a plugin's convert command rewrote as
safetensors (e.g. ``bregzoo convert edm-pkl``). Its config.json carries ``"bregzoo_converted_teacher": 1``
and names the teacher plugin that loads it (``"teacher": "edm"`` -> ``edm:path=DIR``), with optional
``backbone`` (the family for the ratio estimator, given ``path=DIR`` too), ``dataset``, ``schedule`` (a
suggestion: such a teacher works under any schedule), ``sampler`` and ``data_shape``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bregzoo import io
from bregzoo.api import create_backbone
from bregzoo.errors import BregzooError
from bregzoo.networks import Denoiser
from bregzoo.registry import parse_spec
from bregzoo.schedules import Schedule, make_schedule
from bregzoo.teacher import Teacher

MARKER = "bregzoo_teacher"
WEIGHTS = "teacher.safetensors"
RAW_WEIGHTS = "teacher_raw.safetensors"


def is_teacher_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``bregzoo teach`` (its config.json carries the marker)."""
    try:
        return MARKER in json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


CONVERTED_MARKER = "bregzoo_converted_teacher"


def converted_config(path: str | Path) -> dict[str, Any] | None:
    """The config.json of a converted teacher directory, or None when ``path`` is not one."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(cfg, dict) or CONVERTED_MARKER not in cfg:
        return None
    if not isinstance(cfg.get("teacher"), str):
        raise BregzooError(f"'{Path(path) / 'config.json'}' does not name its teacher plugin ('teacher'); convert the checkpoint again")
    return cfg


def read_teacher_config(path: str | Path) -> dict[str, Any]:
    """The config.json of a teacher directory; anything else is a user error that says what it expected."""
    root = Path(os.path.expanduser(path))
    if not root.is_dir():
        raise BregzooError(f"teacher directory '{root}' does not exist; train one with 'bregzoo teach --out {root}'")
    try:
        cfg = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BregzooError(f"'{root}' has no config.json; it is not a teacher directory from 'bregzoo teach'") from None
    except ValueError as exc:
        raise BregzooError(f"'{root / 'config.json'}' is not valid JSON ({exc}); train the teacher again") from None
    if not isinstance(cfg, dict) or MARKER not in cfg:
        raise BregzooError(f"'{root}' is not a teacher directory from 'bregzoo teach' (no '{MARKER}' in config.json)")
    missing = [k for k in ("dataset", "backbone", "schedule", "sigma_data", "data_shape") if k not in cfg]
    if missing:
        raise BregzooError(f"'{root / 'config.json'}' lacks {', '.join(missing)}; train the teacher again")
    return cfg


def schedule_of(cfg: dict[str, Any]) -> Schedule:
    """The teacher's schedule from its config's spec, e.g. 'edm' or 'vp:beta_max=20.0'."""
    name, params = parse_spec(cfg["schedule"])
    return make_schedule(name, **params)


def build_denoiser(cfg: dict[str, Any], schedule: Schedule | None = None) -> Denoiser:
    """A fresh (untrained) Denoiser with the teacher config's backbone, schedule and sigma_data."""
    shape = tuple(cfg["data_shape"])
    net = create_backbone(cfg["backbone"], data_shape=shape)
    return Denoiser(net, schedule or schedule_of(cfg), float(cfg["sigma_data"]))


class DirTeacher(Teacher):
    """A teacher trained by ``bregzoo teach``. ``denoiser`` is a core ``Denoiser``, so distillation can
    start the generator and the fake denoiser from its weights (see ``bregzoo.train.build``)."""

    def __init__(self, denoiser: Denoiser, data_shape: tuple[int, ...], config: dict[str, Any]) -> None:
        super().__init__(denoiser.schedule, data_shape)
        self.denoiser = denoiser.eval().requires_grad_(False)
        self.config = config
        sampler = config.get("sampler", {})
        self.sampler_method, self.sampler_steps = sampler.get("method", "heun"), int(sampler.get("steps", 40))

    def denoise(self, x: Tensor, t: Tensor) -> Tensor:
        return self.denoiser(x, t)


def load_teacher_dir(path: str | Path, schedule: Schedule | None = None, weights: str = WEIGHTS) -> DirTeacher:
    """Load a teacher directory. ``schedule``, when given, must equal the teacher's own: a denoiser is only
    right under the noise schedule it was trained with."""
    root = Path(os.path.expanduser(path))
    cfg = read_teacher_config(root)
    own = schedule_of(cfg)
    if schedule is not None and schedule != own:
        raise BregzooError(
            f"the teacher in '{root}' was trained with schedule {cfg['schedule']!r} ({own}), not {schedule}; "
            f"distil with --schedule {cfg['schedule']} (or leave --schedule out to adopt the teacher's)"
        )
    denoiser = build_denoiser(cfg, own)
    state = io.load_file(root / weights)
    try:
        denoiser.load_state_dict(state)
    except RuntimeError as exc:
        raise BregzooError(f"'{root / weights}' does not match the network its config.json describes: {exc}") from None
    return DirTeacher(denoiser, tuple(cfg["data_shape"]), cfg)


def save_weights(path: Path, module: torch.nn.Module, step: int) -> Path:
    """A Denoiser's state dict as safetensors, the step in the header."""
    return io.save_file(module.state_dict(), path, metadata={MARKER: "1", "step": str(step)})
