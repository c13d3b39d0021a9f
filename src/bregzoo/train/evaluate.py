"""Sample-quality metrics through the metric registry (the core names none of them)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from torch import Tensor

from bregzoo.api import create_metric


@lru_cache(maxsize=None)
def _metric(spec: str) -> Callable[[Tensor, Any], dict[str, float]]:
    return create_metric(spec)


def check_metrics(*specs: str) -> None:
    """Build every metric now, so a misspelt or misconfigured one fails before training, not after it."""
    for spec in specs:
        _metric(spec)


def evaluate(samples: Tensor, dataset: Any, metrics: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Run each named metric (``metric(samples, dataset) -> dict``) and merge the results."""
    out: dict[str, float] = {}
    for spec in metrics:
        out.update({k: float(v) for k, v in _metric(spec)(samples, dataset).items()})
    return out


def directions(*specs: str) -> dict[str, str]:
    """How each metric output reads: "lower" or "higher" is better, or "exact" (closest to the task's
    exact samples). A metric says so with a ``better`` mapping; outputs it leaves out have none."""
    out: dict[str, str] = {}
    for spec in specs:
        out.update(getattr(_metric(spec), "better", {}) or {})
    return out
