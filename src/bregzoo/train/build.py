"""Resolve a RunConfig's component names through the registries and build the networks.

The generator and the fake denoiser start from the teacher's network when the teacher exposes one:
a teacher whose ``denoiser`` attribute is a trainable module ``D(x_t, t)`` (a core
``bregzoo.networks.Denoiser``, or a plugin's own, e.g. the DDPM teacher's eps -> x0 wrapper). The
analytic mixture teacher has none, so both start from scratch on the configured backbone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bregzoo.api import (check_component, create_backbone, create_dataset, create_divergence, create_ratio_estimator,
                         create_teacher)
from bregzoo.config import RunConfig
from bregzoo.divergence import Divergence
from bregzoo.estimator import RatioEstimator
from bregzoo.errors import BregzooError
from bregzoo.networks import Denoiser, FeatureRatioHead, LatentDenoiser, RatioNet, feature_module, feature_shape
from bregzoo.plugins import get_host
from bregzoo.registry import parse_spec
from bregzoo.schedules import Schedule, make_schedule
from bregzoo.teacher import Teacher
from bregzoo.train.evaluate import check_metrics
from bregzoo.train.sampler import generate, student_times  # noqa: F401 - generate: its home before k-step students

# Config key -> registry kind, for provenance.
KIND_OF = {"task": "dataset", "teacher": "teacher", "backbone": "backbone", "divergence": "divergence",
           "estimator": "ratio-estimator"}


@dataclass
class Parts:
    """Everything a run is built from, before Accelerate wraps the trainable networks."""

    dataset: Any
    teacher: Teacher
    schedule: Schedule
    divergence: Divergence
    estimator: RatioEstimator
    generator: Denoiser
    fake: Denoiser
    ratio: nn.Module  # a RatioNet ell(x_t, t), or with train.ratio_net=shared a FeatureRatioHead ell(features, t)
    sigma_data: float
    from_teacher: bool
    provenance: dict[str, dict[str, str]] = field(default_factory=dict)
    latent_shape: tuple[int, ...] = ()  # the generator's noise per sample: data_shape, or more channels with extra_latent
    ratio_net: str = "separate"  # train.ratio_net resolved ("auto" -> "separate" or "shared")


def build_schedule(spec: str) -> Schedule:
    """``vp`` or ``edm:t_max=80`` -> a Schedule."""
    name, params = parse_spec(spec)
    return make_schedule(name, **params)


def sigma_data_of(dataset: Any) -> float:
    """EDM's sigma_data: the task's per-coordinate std when it knows it, else EDM's 0.5 for images."""
    std = getattr(dataset, "std", None)
    return float(std) if isinstance(std, (int, float)) and std > 0 else 0.5


def resolve(cfg: RunConfig) -> None:
    """Resolve every component spec of ``cfg`` as ``build`` will, without building networks or loading data.

    The schedule, divergence, estimator and metrics are built (they are small objects, and building
    them checks their parameters' values), and the student's noise levels are checked against the
    schedule; the task, teacher and backbone are checked by name and parameter names, with the
    keywords that ``build`` passes them. ``train --dry-run`` and ``train``
    both call this first, so the two refuse the same specs with the same message.
    """
    check_component("dataset", cfg.task)
    student_times(build_schedule(cfg.schedule), cfg.train.student_steps, cfg.train.student_times)
    check_component("teacher", cfg.teacher, dataset=None, schedule=None)
    create_divergence(cfg.divergence)
    create_ratio_estimator(cfg.estimator)
    check_component("backbone", cfg.backbone, data_shape=None, scalar_output=True)
    check_metrics(*cfg.eval.metrics, *cfg.eval.final_metrics)


@dataclass
class Base:
    """What the networks are built for: the task, its schedule and the teacher."""

    dataset: Any
    schedule: Schedule
    teacher: Teacher
    sigma_data: float

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.data_shape)


def build_base(cfg: RunConfig) -> Base:
    """The task, the schedule and the teacher of ``cfg`` (no trainable network)."""
    dataset = create_dataset(cfg.task)
    schedule = build_schedule(cfg.schedule)
    # The teacher gets its own copy of a module-like task: moving the teacher to a device must not
    # move the reference sampler, which draws on the CPU from a seeded generator.
    teacher_data = copy.deepcopy(dataset) if isinstance(dataset, nn.Module) else dataset
    teacher = create_teacher(cfg.teacher, dataset=teacher_data, schedule=schedule)
    teacher.eval().requires_grad_(False)
    return Base(dataset, schedule, teacher, sigma_data_of(dataset))


def build(cfg: RunConfig, init_seed: int | None = None, base: Base | None = None) -> Parts:
    """Build the task, teacher, divergence, estimator and the three networks (seeded init).

    ``base``: the task, schedule and teacher when they were built already (``build_base``).
    """
    base = base or build_base(cfg)
    divergence = create_divergence(cfg.divergence)
    estimator = create_ratio_estimator(cfg.estimator)
    schedule, sigma_data, shape = base.schedule, base.sigma_data, base.data_shape

    torch.manual_seed(cfg.train.seed if init_seed is None else init_seed)
    generator, from_teacher = _generator(cfg, base)
    if from_teacher:
        fake = copy.deepcopy(base.teacher.denoiser)
        fake.requires_grad_(True)
    else:
        fake = Denoiser(create_backbone(cfg.backbone, data_shape=shape), schedule, sigma_data)
    ratio_net, fshape = cfg.train.ratio_net, None
    if ratio_net == "auto":
        fshape = feature_shape(fake, shape, schedule.t_max) if feature_module(fake) is not None else None
        ratio_net = "shared" if fshape is not None and len(fshape) == 1 else "separate"
    if ratio_net != "separate":
        ratio = shared_ratio_head(cfg, fake, shape, schedule, fshape)
    else:
        ratio = RatioNet(create_backbone(cfg.backbone, data_shape=shape, scalar_output=True), schedule, sigma_data)
    return Parts(base.dataset, base.teacher, base.schedule, divergence, estimator, generator, fake, ratio, sigma_data,
                 from_teacher, provenance(cfg), latent_shape(shape, cfg.train.extra_latent), ratio_net)


def shared_ratio_head(cfg: RunConfig, fake: nn.Module, shape: tuple[int, ...], schedule: Schedule,
                      fshape: tuple[int, ...] | None = None) -> FeatureRatioHead:
    """The estimator of train.ratio_net=shared: a head sized for the fake denoiser's trunk features."""
    if feature_module(fake) is None:
        raise BregzooError(f"train.ratio_net={cfg.train.ratio_net} puts the estimator on the fake denoiser's trunk features, but its "
                           f"network (backbone {cfg.backbone!r}, teacher {cfg.teacher!r}) exposes none (no "
                           "feature_module()); use train.ratio_net=separate")
    return FeatureRatioHead(fshape or feature_shape(fake, shape, schedule.t_max))


def _from_teacher(cfg: RunConfig, base: Base) -> bool:
    """Whether the generator and the fake denoiser start as copies of the teacher's network."""
    from_teacher = cfg.train.init_from_teacher and isinstance(getattr(base.teacher, "denoiser", None), nn.Module)
    if from_teacher and cfg.train.extra_latent:
        raise BregzooError(f"train.extra_latent ({cfg.train.extra_latent}) needs a generator built for a larger input, "
                           f"but the teacher's network (input {base.data_shape}) would initialise it; set "
                           "train.init_from_teacher=false, or train.extra_latent=0")
    return from_teacher


def _generator(cfg: RunConfig, base: Base) -> tuple[nn.Module, bool]:
    """The generator of ``cfg`` (on the current default device), and whether it is the teacher's network."""
    if _from_teacher(cfg, base):
        generator = copy.deepcopy(base.teacher.denoiser)
        return generator.requires_grad_(True), True
    shape, s, sd = base.data_shape, base.schedule, base.sigma_data
    if cfg.train.extra_latent:
        latent = latent_shape(shape, cfg.train.extra_latent)
        return LatentDenoiser(create_backbone(cfg.backbone, data_shape=latent), s, sd, shape[0]), False
    return Denoiser(create_backbone(cfg.backbone, data_shape=shape), s, sd), False


def generator_shapes(cfg: RunConfig, base: Base) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in the generator's state dict, with nothing allocated: the network is
    built on the meta device (or, started from the teacher, is the teacher's, which exists already)."""
    if _from_teacher(cfg, base):
        return {k: tuple(v.shape) for k, v in base.teacher.denoiser.state_dict().items()}
    try:
        with torch.device("meta"):
            generator, _ = _generator(cfg, base)
    except (RuntimeError, ValueError, OverflowError) as exc:  # e.g. a width whose element count overflows int64
        raise BregzooError(f"backbone {cfg.backbone!r}: cannot build the network it describes "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return {k: tuple(v.shape) for k, v in generator.state_dict().items()}


def latent_shape(data_shape: tuple[int, ...], extra: int = 0) -> tuple[int, ...]:
    """The generator's noise shape per sample: the data's, with ``extra`` more channels (first axis).

    >>> latent_shape((2,), 6), latent_shape((3, 8, 8), 1)
    ((8,), (4, 8, 8))
    """
    return (data_shape[0] + extra, *data_shape[1:])


def provenance(cfg: RunConfig) -> dict[str, dict[str, str]]:
    """Which distribution and version provided each named component."""
    out = {}
    for key, kind in KIND_OF.items():
        name, params = parse_spec(getattr(cfg, key))
        p = get_host().provider_of(kind, name)
        out[key] = {"spec": getattr(cfg, key), "name": name, "dist": p.dist if p else "?",
                    "version": p.version if p else "?", "plugin": p.plugin if p else "?"}
    return out
