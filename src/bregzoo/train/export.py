"""The shipped student: generator weights in safetensors, with the run config in the header.

A ``generator.safetensors`` file is self-describing: ``load_student`` rebuilds the network from the
config stored in its metadata (through the same registries), so ``bregzoo sample`` needs nothing else.
The metadata also holds ``student_steps`` and ``student_times``, the noise levels the student was
trained at (resolved, so a later change of the default spacing cannot change a shipped student); a
file without them (written before k-step students) is a one-step student. ``latent_shape`` is the
noise one sample draws (the data's shape, or more channels with ``train.extra_latent``); the config
alone rebuilds it, the entry is there for readers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bregzoo import io
from bregzoo.config import RunConfig
from bregzoo.errors import BregzooError
from bregzoo.schedules import Schedule
from bregzoo.train.build import build, build_base, generator_shapes
from bregzoo.train.sampler import generate, student_times
from bregzoo.train.rundir import is_run_dir


def save_student(path: Path, generator: nn.Module, cfg: RunConfig, step: int,
                 times: tuple[float, ...] | None = None) -> Path:
    """Write the generator's weights with the config, the step and its noise levels in the safetensors metadata."""
    if times is None:
        from bregzoo.train.build import build_schedule

        times = student_times(build_schedule(cfg.schedule), cfg.train.student_steps, cfg.train.student_times)
    meta = {"bregzoo_generator": "1", "config": cfg.to_json(), "step": str(step),
            "student_steps": str(len(times)), "student_times": json.dumps(list(times))}
    if cfg.train.extra_latent:
        meta["extra_latent"] = str(cfg.train.extra_latent)
    return io.save_file(generator.state_dict(), path, metadata=meta)


@dataclass
class Student:
    """A loaded k-step generator and what it needs to sample."""

    generator: nn.Module
    schedule: Schedule
    data_shape: tuple[int, ...]
    config: RunConfig
    dataset: Any
    step: int
    times: tuple[float, ...] = ()  # the k noise levels it is applied at; () reads as the schedule's t_max
    latent_shape: tuple[int, ...] = ()  # one sample's generator noise per level; () reads as data_shape

    def __post_init__(self) -> None:
        self.times = tuple(self.times) or (float(self.schedule.t_max),)
        self.latent_shape = tuple(self.latent_shape) or tuple(self.data_shape)

    @property
    def steps(self) -> int:
        """Generator calls per sample."""
        return len(self.times)

    def noise(self, n: int, generator: torch.Generator) -> Tensor:
        """The (n, k, *latent_shape) noise of n samples (for k = 1, the values of an (n, *latent_shape) draw)."""
        return torch.randn(n, self.steps, *self.latent_shape, generator=generator)

    def draw(self, noise: Tensor) -> Tensor:
        """Samples from ``noise`` of shape (B, k, *latent_shape), through the k-step chain."""
        return generate(self.generator, self.schedule, noise, self.times)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch: int = 4096, device: str = "cpu") -> Tensor:
        """n samples from seeded noise, in batches."""
        g = torch.Generator().manual_seed(seed)
        self.generator.to(device).eval()
        out = []
        for i in range(0, n, batch):
            out.append(self.draw(self.noise(min(batch, n - i), g).to(device)).float().cpu())
        return torch.cat(out)


def resolve_weights(path: str | Path) -> Path:
    """A run directory, a checkpoint's generator file, or a .safetensors path -> the weights file."""
    path = Path(path)
    if path.is_dir():
        if is_run_dir(path) and (path / "generator.safetensors").exists():
            return path / "generator.safetensors"
        raise BregzooError(f"{path} has no generator.safetensors; did the run finish? "
                           "Pass a run directory or a generator .safetensors file")
    if not path.exists():
        raise BregzooError(f"{path} does not exist; pass a run directory or a generator .safetensors file")
    return path


def load_student(path: str | Path) -> Student:
    """Rebuild the student from a run directory or a generator.safetensors file (no pickle)."""
    weights = resolve_weights(path)
    meta = io.read_metadata(weights)
    if "config" not in meta:
        raise BregzooError(f"{weights} is not a bregzoo generator (no config in its metadata)")
    try:
        cfg = RunConfig.from_dict(json.loads(meta["config"]))
    except json.JSONDecodeError as exc:
        raise BregzooError(f"{weights}: the stored config is not valid JSON ({exc})") from None
    base = build_base(cfg)
    # Before any real network exists: the config in a file's header could describe a network far larger than
    # its tensors (an mlp of width 20000 has billions of parameters), which build() would allocate three times.
    # Once every shape matches, the networks are no larger than the file's own tensors.
    check_shapes(weights, generator_shapes(cfg, base))
    parts = build(cfg, base=base)
    try:
        parts.generator.load_state_dict(io.load_file(weights))
    except RuntimeError as exc:
        details = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise BregzooError(
            f"{weights} does not match the network its config describes ({len(details)} problems, first: "
            f"{details[0] if details else exc}); the file was edited or written by another architecture"
        ) from None
    return Student(parts.generator.eval(), parts.schedule, tuple(parts.dataset.data_shape), cfg, parts.dataset,
                   int(meta.get("step", 0)), stored_times(weights, meta, cfg, parts.schedule), parts.latent_shape)


def check_shapes(weights: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """The tensors in ``weights`` (read from its header) are exactly ``expected``: every name, every shape."""
    found = io.read_shapes(weights)
    problems = [f"{k}: {list(found[k])} in the file, {list(v)} in the network" for k, v in expected.items()
                if k in found and found[k] != v]
    problems += [f"missing {k}" for k in expected if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    if problems:
        size = lambda shapes: sum(math.prod(s) for s in shapes.values())  # noqa: E731
        raise BregzooError(
            f"{weights} does not match the network its config describes ({size(expected):,} numbers in the network, "
            f"{size(found):,} in the file; {len(problems)} problems, first: {problems[0]}); the file was edited or "
            "written by another architecture")


def stored_times(weights: Path, meta: dict[str, str], cfg: RunConfig, schedule: Schedule) -> tuple[float, ...]:
    """The noise levels in a generator file's metadata, checked against its schedule; from its config when absent."""
    if "student_times" not in meta:
        return student_times(schedule, cfg.train.student_steps, cfg.train.student_times)
    try:
        times = json.loads(meta["student_times"])
        return student_times(schedule, len(times), times)
    except (ValueError, TypeError, BregzooError) as exc:
        raise BregzooError(f"{weights}: the stored student_times {meta['student_times'][:200]!r} are not the noise "
                           f"levels of a student of this schedule ({exc}); the file was edited or damaged") from None
