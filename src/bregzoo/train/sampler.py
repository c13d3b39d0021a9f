"""The k-step student: DMD2's multi-step generator schedule, and its backward simulation for training.

The generator is applied at k fixed noise levels t_1 > ... > t_k. It starts from pure noise at t_1,
x = sigma(t_1) eps_0, and after each application its output x0 is diffused afresh to the next level,
x = alpha(t_{i+1}) x0 + sigma(t_{i+1}) eps_i (alpha = 1 under EDM), before the next one (Yin et al.
2024, "Improved Distribution Matching Distillation", §4.5). With k = 1 this is the one-step student.

The noise of one k-step sample is one tensor of shape (k, *data_shape): the starting noise, then the
k - 1 re-noisings. A batch of them is (B, k, *data_shape); for k = 1 it holds exactly the values of a
(B, *data_shape) draw from the same generator, so a one-step student samples as it always did.

Example:
    >>> from bregzoo.schedules import make_schedule
    >>> [round(t, 3) for t in student_times(make_schedule("edm", t_min=0.02, t_max=3.0), 4)]
    [3.0, 1.152, 0.38, 0.102]
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from bregzoo.errors import BregzooError
from bregzoo.networks import diffuse
from bregzoo.schedules import Schedule
from bregzoo.teacher import per_sample


def student_times(schedule: Schedule, steps: int = 1, times: Sequence[float] | None = None) -> tuple[float, ...]:
    """The k noise levels of a k-step student, largest first.

    Given ``times`` are checked against the schedule (strictly decreasing, within [t_min, t_max]).
    Otherwise they are the first k of k + 1 levels spaced as EDM's sampler spaces its steps (rho = 7
    in s = sigma/alpha) from t_max down to t_min: t_1 = t_max, and the last level stays above t_min,
    where the generator would have nothing left to do (DMD2's 4-step list likewise stops at 250/1000).
    """
    if steps < 1:
        raise BregzooError(f"train.student_steps must be >= 1, got {steps}")
    if times is None:
        grid = schedule.sampling_grid(steps + 1).tolist()[:steps]
        return (float(schedule.t_max), *map(float, grid[1:]))  # t_max exactly: the one-step student's level
    times = tuple(float(t) for t in times)
    if len(times) != steps:
        raise BregzooError(f"train.student_times has {len(times)} levels but train.student_steps is {steps}; "
                           "give one level per step (or leave student_times out for the default spacing)")
    if any(not a > b for a, b in zip(times, times[1:])):
        raise BregzooError(f"train.student_times must be strictly decreasing (the student denoises from high "
                           f"noise to low), got {list(times)}")
    if not all(schedule.t_min <= t <= schedule.t_max for t in times):
        raise BregzooError(f"train.student_times {list(times)} must lie within the schedule's "
                           f"[t_min, t_max] = [{schedule.t_min}, {schedule.t_max}]")
    return times


def _level(t: float, like: Tensor) -> Tensor:
    return torch.full((like.shape[0],), t, dtype=torch.float32, device=like.device)


def generate(generator: nn.Module, schedule: Schedule, eps: Tensor, times: Sequence[float] | None = None) -> Tensor:
    """Samples of the student: its whole chain, one generator call per level of ``times``.

    ``times=None`` is the one-step student at the schedule's t_max with ``eps`` of shape (B, *data_shape):
    x0 = G(sigma(t_max) eps, t_max). With ``times`` (k levels), ``eps`` is (B, k, *data_shape).
    """
    if times is None:
        times, eps = (schedule.t_max,), eps.unsqueeze(1)
    if eps.shape[1] != len(times):
        raise ValueError(f"noise for {len(times)} levels must have shape (B, {len(times)}, ...), "
                         f"got {tuple(eps.shape)}")
    t = _level(times[0], eps)
    x = per_sample(schedule.sigma(t).to(eps.dtype), eps[:, 0]) * eps[:, 0]
    for i in range(len(times)):
        x0 = generator(x, t)
        if i + 1 < len(times):
            t = _level(times[i + 1], eps)
            x = diffuse(x0.to(eps.dtype), t, schedule, eps[:, i + 1])
    return x0


@torch.no_grad()
def simulate(generator: nn.Module, schedule: Schedule, eps: Tensor, times: Sequence[float],
             index: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """DMD2's backward simulation: each sample's generator input at its level t_{index} (0-based), and that level.

    The input at t_1 is pure noise; the input at a later level comes from the student's own chain, run
    without gradient from pure noise down to it, so training sees what sampling will feed the generator.
    ``eps`` is (B, k, *data_shape); ``index`` (B,) integers in [0, k), None: every sample at t_1.
    """
    t = _level(times[0], eps)
    x = per_sample(schedule.sigma(t).to(eps.dtype), eps[:, 0]) * eps[:, 0]
    if index is None:
        return x, t
    levels = torch.tensor(times, dtype=torch.float32, device=eps.device)
    for i in range(int(index.max()) if index.numel() else 0):
        go = index > i  # only the samples whose level lies further down the chain take this step
        x0 = generator(x[go], t[go]).to(eps.dtype)
        x, t = x.clone(), t.clone()
        t[go] = levels[i + 1]
        x[go] = diffuse(x0, t[go], schedule, eps[go, i + 1])
    return x, t


def generate_at(generator: nn.Module, schedule: Schedule, eps: Tensor, times: Sequence[float],
                index: Tensor | None = None) -> Tensor:
    """The generator's output at each sample's level t_{index}, from its backward simulation: the
    student outputs that training matches to the teacher (with gradient, when the caller has it on)."""
    x, t = simulate(generator, schedule, eps, times, index)
    return generator(x, t)
