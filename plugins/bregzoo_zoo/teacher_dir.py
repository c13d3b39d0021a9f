"""The ``bregzoo`` teacher: a directory written by ``bregzoo teach`` (config.json + teacher.safetensors)."""

from __future__ import annotations

from typing import Any

from bregzoo import BregzooError
from bregzoo.schedules import Schedule


def bregzoo_teacher(dataset: Any, schedule: Schedule | None = None, path: str | None = None, weights: str = "ema") -> Any:
    """Load a teacher directory from ``bregzoo teach``; ``schedule`` must be the one it was trained with."""
    from bregzoo.teacher_dir import RAW_WEIGHTS, WEIGHTS, load_teacher_dir

    if path is None:
        raise BregzooError("the bregzoo teacher needs its directory: bregzoo:path=DIR (train one with 'bregzoo teach')")
    if weights not in ("ema", "raw"):
        raise BregzooError(f"bregzoo teacher: weights must be 'ema' or 'raw', got {weights!r}")
    teacher = load_teacher_dir(path, schedule, WEIGHTS if weights == "ema" else RAW_WEIGHTS)
    want = getattr(dataset, "data_shape", None)
    if want is not None and tuple(want) != teacher.data_shape:
        raise BregzooError(
            f"the teacher in '{path}' makes {teacher.data_shape} samples (trained on {teacher.config['dataset']!r}) "
            f"but the task has {tuple(want)}; use --task {teacher.config['dataset']}"
        )
    return teacher
