"""Evaluate a k-step student or a teacher's K-step sampler against a dataset's held-out split.

Both sides go through the same path: draw ``n`` samples from seeded noise in batches (timed, so the
per-image sampling cost is reported next to the metrics), then run each named metric from the metric
registry against the reference dataset, by default the dataset's ``test`` split when it has one.

Example:
    >>> r = evaluate_teacher("bregzoo:path='teachers/digits'", "digits", "edm", ("fid",), n=500, steps=40)  # doctest: +SKIP
    >>> r.metrics["fid"], r.seconds_per_image  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from bregzoo.api import create_dataset, create_metric, create_teacher
from bregzoo.errors import BregzooError
from bregzoo.plugins import get_host
from bregzoo.registry import parse_spec
from bregzoo.schedules import make_schedule
from bregzoo.teacher import sample_ode


@dataclass
class EvalResult:
    """Metrics of one sampler, and what it cost to draw the samples."""

    kind: str  # "student" or "teacher"
    source: str  # the run directory or teacher spec
    dataset: str  # the reference dataset spec
    n: int
    steps: int  # sampler steps (a student's: the k it was trained with, train.student_steps)
    nfe: int  # network evaluations per sample
    seconds: float  # wall time of sampling all n
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.n

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds_per_image": self.seconds_per_image}


def reference_dataset(spec: str, split: str | None = "test") -> tuple[Any, str]:
    """The dataset ``spec`` on ``split`` when its factory takes a ``split`` the spec does not already set."""
    name, params = parse_spec(spec)
    factory = get_host().registries["dataset"].get(name).factory
    takes_split = "split" in inspect.signature(factory).parameters
    if split is not None and takes_split and "split" not in params:
        params["split"] = split
    shown = name + (":" + ",".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in params.items()) if params else "")
    return create_dataset(name, **params), shown


def run_metrics(samples: Tensor, dataset: Any, metrics: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Each named metric from the registry, results merged."""
    out: dict[str, float] = {}
    for spec in metrics:
        try:
            values = create_metric(spec)(samples, dataset)
        except BregzooError as exc:  # e.g. an image metric on 2-D points: say which metric, and what fits
            shape = tuple(getattr(dataset, "data_shape", tuple(samples.shape[1:])))
            raise BregzooError(f"metric {spec!r} does not fit this data (samples of shape {shape}): {exc}; "
                               f"leave --metrics out for the task's own metrics ({', '.join(default_metrics(shape))})"
                               ) from None
        out.update({k: float(v) for k, v in values.items()})
    return out


def default_metrics(data_shape: tuple[int, ...]) -> tuple[str, ...]:
    """The metrics that fit data of this shape: FID/KID/precision-recall for images, the exact
    mixture metrics (with the run's own evaluation) for vectors."""
    from bregzoo.config import EvalConfig

    return ("fid", "kid", "prc") if len(data_shape) == 3 else EvalConfig().final_metrics


def timed_batches(draw: Callable[[Tensor], Tensor], shape: tuple[int, ...], n: int, seed: int, batch: int) -> tuple[Tensor, float]:
    """Samples from ``draw(noise)`` over seeded noise in batches; the wall time counts the network calls only."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, *shape, generator=g)
    out, seconds = [], 0.0
    with torch.no_grad():
        for chunk in noise.split(batch):
            start = time.perf_counter()
            out.append(draw(chunk).float().cpu())
            seconds += time.perf_counter() - start
    return torch.cat(out), seconds


def evaluate_teacher(teacher: str, dataset: str, schedule: str, metrics: tuple[str, ...] | list[str] | None, n: int = 1000,
                     steps: int = 40, method: str = "heun", seed: int = 0, batch: int = 500, split: str | None = "test") -> EvalResult:
    """The teacher ``teacher`` (a registry spec) sampled with its ``steps``-step ODE solver, against ``dataset``."""
    if n < 2:
        raise BregzooError(f"-n must be >= 2, got {n}")
    name, params = parse_spec(schedule)
    sched = make_schedule(name, **params)
    train_set = create_dataset(dataset)
    model = create_teacher(teacher, dataset=train_set, schedule=sched).eval()
    metrics = metrics or default_metrics(tuple(train_set.data_shape))
    x, seconds = timed_batches(lambda e: sample_ode(model.denoise, sched, e, steps, method), tuple(train_set.data_shape), n, seed, batch)
    ref, shown = reference_dataset(dataset, split)
    nfe = steps if method == "euler" else 2 * steps - 1
    return EvalResult("teacher", teacher, shown, n, steps, nfe, seconds, run_metrics(x, ref, metrics))


def evaluate_student(path: str, metrics: tuple[str, ...] | list[str] | None, n: int = 1000, seed: int = 0, batch: int = 500,
                     dataset: str | None = None, split: str | None = "test") -> EvalResult:
    """The student of a run directory (or generator file), sampled with the steps it was trained with
    (stored in its generator file), against its task's ``split``."""
    from bregzoo.train.export import load_student

    if n < 2:
        raise BregzooError(f"-n must be >= 2, got {n}")
    student = load_student(path)
    metrics = metrics or student.config.eval.final_metrics  # what the run itself reported
    student.generator.eval()
    # (n, k, *latent_shape) noise, as Student.sample draws it: the same samples for the same seed
    x, seconds = timed_batches(student.draw, (student.steps, *student.latent_shape), n, seed, batch)
    ref, shown = reference_dataset(dataset or student.config.task, split)
    return EvalResult("student", str(path), shown, n, student.steps, student.steps, seconds,
                      run_metrics(x, ref, metrics))
