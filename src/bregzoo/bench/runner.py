"""Run a suite's cells (on local worker processes or Ray: ``executors``), one result file per finished cell, resumable.

    <out>/cells/<cell-id>.json    a finished cell (written atomically; skipped on the next run)
    <out>/failed/<cell-id>.json   a cell's last failure, with its error and traceback (run again next time)
    <out>/work/<cell-id>/         the cell's run directory while it trains (removed afterwards)

A cell is reused only if its stored config matches the cell's config now (``same_config``), so editing
a suite's budget reruns the affected cells instead of mixing budgets in one leaderboard. Its weighting is
compared as resolved (``resolved_weighting``), since "auto" means the divergence's default: a new default
for a divergence reruns that divergence's cells, and only those.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import platform
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bregzoo import io
from bregzoo.bench.executors import ExecutorSpec, run_cells
from bregzoo.bench.suite import Cell, Suite, expand

SAMPLES_KEPT = 256  # student/teacher samples stored per cell for the montage
OnCell = Callable[[Cell, dict[str, Any], int, int], None]


@dataclass
class SuiteRun:
    """What ``run_suite`` did: the cell results (finished and reused) and the groups it skipped."""

    results: list[dict[str, Any]] = field(default_factory=list)
    ran: int = 0
    reused: int = 0
    missing: int = 0  # cells neither finished before nor run now (``execute=False``)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _finite(d: dict[str, float]) -> dict[str, float | None]:
    """NaN/inf (a diverged run) become null: JSON has no NaN, and the leaderboard counts them as failed."""
    return {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in d.items()}


def _samples(x: Any) -> list:
    """Samples for the montage: 256 points for vector data, 16 images (as nested lists) for images."""
    import torch

    if not isinstance(x, torch.Tensor):
        return []
    x = x.detach().float().cpu()
    if x.ndim == 2:
        return [[round(float(v), 4) for v in row] for row in x[:SAMPLES_KEPT]]
    return [torch.round(img * 1e3).div(1e3).tolist() for img in x[:16]]


def _teacher_samples(student: Any, cell: Cell) -> Any:
    """A few samples of the teacher's ODE sampler, for the montage (same settings as its metrics row)."""
    import torch

    from bregzoo.train.build import build
    from bregzoo.teacher import sample_ode, sampling_schedule

    parts, e = build(cell.config), cell.config.eval
    noise = torch.randn(SAMPLES_KEPT, *student.data_shape, generator=torch.Generator().manual_seed(cell.seed))
    sched = sampling_schedule(parts.schedule, parts.teacher, e.teacher_sigma_max)
    with torch.no_grad():
        return sample_ode(parts.teacher.denoise, sched, noise, e.teacher_steps, e.teacher_sampler)


def resolved_weighting(cell: Cell) -> dict[str, Any]:
    """The weighting ``cell`` trains with: its config's, "auto" resolved for its divergence, as the run's
    config.json records it (plain JSON values already: no tuples, and no inf after resolving)."""
    from bregzoo.api import create_divergence
    from bregzoo.train.weighting import resolve

    return dataclasses.asdict(resolve(cell.config.weighting, create_divergence(cell.config.divergence)))


def run_cell(cell: Cell, out: str) -> dict[str, Any]:
    """Train one cell in a scratch run directory and return its result record (never raises on a
    training failure: the error is recorded, so one diverging divergence cannot stop the suite)."""
    import torch

    from bregzoo.bench.provenance import divergence_provenance
    from bregzoo.train import load_student, train

    work = Path(out) / "work" / cell.id
    record: dict[str, Any] = {
        "bregzoo_bench_cell": 1, "id": cell.id, "group": cell.group, "task": cell.task,
        "divergence": cell.divergence, "estimator": cell.estimator, "seed": cell.seed,
        "student_steps": cell.student_steps,
        "config_hash": cell.config_hash, "config": cell.config.replace(out=None).to_dict(),
        "provenance": divergence_provenance(cell.divergence), "torch": torch.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
    }
    started = time.perf_counter()
    try:
        record["weighting_resolved"] = resolved_weighting(cell)
        result = train(cell.config.replace(out=str(work)), overwrite=True)
        student = load_student(result.run_dir)
        record.update(status="ok", steps=result.steps, seconds=result.seconds,
                      student=_finite(result.student), teacher=_finite(result.teacher),
                      exact=_finite(result.exact),  # the task's own samples: the metric's noise floor
                      samples=_samples(student.sample(SAMPLES_KEPT, seed=cell.seed)),
                      teacher_samples=_samples(_teacher_samples(student, cell)),
                      curve=_curve(result.run_dir / "metrics.jsonl"))
    except Exception as exc:  # recorded, reported in the leaderboard as failed
        record.update(status="failed", seconds=time.perf_counter() - started, student={}, teacher={},
                      error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                      traceback=traceback.format_exc()[-2000:])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record


def _curve(metrics: Path) -> list[dict[str, Any]]:
    """The student's evaluations during training (every ``train.eval_every`` steps) and the final one, so
    that a stored cell shows where its run was on its curve (one point when the suite evaluates only at
    the end)."""
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{**_finite({k: v for k, v in r.items() if k not in ("split", "step")}), "step": int(r["step"])}
            for r in rows if r.get("split") in ("student", "final-student")]


def cell_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.id}.json"


def failed_path(out: Path, cell: Cell) -> Path:
    return out / "failed" / f"{cell.id}.json"


def same_config(stored: Any, now: Any) -> bool:
    """Whether a stored cell config still describes ``now``: every stored key has the same value.

    Keys added to RunConfig after the cell ran are ignored: a new config field's default keeps the
    old behaviour (the convention for adding one), so adding a field does not void finished cells.
    """
    if isinstance(stored, dict):
        return isinstance(now, dict) and all(k in now and same_config(v, now[k]) for k, v in stored.items())
    return stored == now


def load_done(out: Path, cell: Cell) -> dict[str, Any] | None:
    """The stored result of ``cell`` if it exists, is readable and was run with the same config."""
    try:
        rec = json.loads(cell_path(out, cell).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("status") != "ok":  # a failure is never a result (one cached by an older bregzoo is rerun)
        return None
    # A cell stored before its resolved weighting was recorded cannot show which default it ran with: rerun it.
    if rec.get("weighting_resolved") != resolved_weighting(cell):
        return None
    if rec.get("config_hash") == cell.config_hash:
        return rec
    return rec if same_config(rec.get("config"), cell.config.replace(out=None).to_dict()) else None


def _execute(cells: list[Cell], out: Path, executor: ExecutorSpec, on_cell: OnCell | None, done_before: int,
             total: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for cell, rec in run_cells(cells, str(out), executor):
        # Only a finished cell is kept as a result; a failed one is kept apart, for its error and traceback,
        # and runs again next time (a failure may be the machine's: memory, a full disk, a killed worker).
        if rec.get("status") == "ok":
            io.write_json(cell_path(out, cell), rec)
            failed_path(out, cell).unlink(missing_ok=True)
        else:
            io.write_json(failed_path(out, cell), rec)
        results.append(rec)
        if on_cell is not None:
            on_cell(cell, rec, done_before + len(results), total)
    return results


def run_suite(suite: Suite, out: str | Path, *, workers: int = 1, seeds: int | None = None, divergence: str = "*",
              task: str = "*", on_cell: OnCell | None = None,
              on_plan: Callable[[int, int], None] | None = None, execute: bool = True,
              executor: ExecutorSpec | None = None, groups: str = "*") -> SuiteRun:
    """Run every selected cell of ``suite`` not already finished in ``out``; groups run in order
    (a ``top:N`` group needs its ``rank_from`` group's results). ``execute=False`` only collects the
    finished cells (a leaderboard of a suite still running elsewhere). ``executor`` says where cells run
    (``bregzoo.bench.executors``); by default ``workers`` local processes. ``groups`` (an fnmatch pattern)
    selects groups by name; a selected ``top:N`` group still reads the finished cells of its ``rank_from``."""
    executor = executor or ExecutorSpec("local", workers=workers)
    from bregzoo.bench.leaderboard import ranked_divergences

    out = Path(out)
    run = SuiteRun()
    wanted = {g.name for g in suite.groups if fnmatch.fnmatchcase(g.name, groups)}
    for group in suite.groups:
        if group.name not in wanted:
            if group.name in {g.rank_from for g in suite.groups if g.name in wanted}:  # read, never run
                run.results += [r for c in expand(suite, group, seeds=seeds) if (r := load_done(out, c)) is not None]
            continue
        missing = group.missing()
        if missing:
            run.skipped.append({"group": group.name, "note": group.missing_note or f"missing {', '.join(missing)}",
                                "missing": ", ".join(missing)})
            continue
        ranked = ranked_divergences(suite, run.results)
        cells = expand(suite, group, seeds=seeds, divergence=divergence, task=task, ranked=ranked)
        todo = []
        for cell in cells:
            rec = load_done(out, cell)
            if rec is None:
                todo.append(cell)
            else:
                run.results.append(rec)
                run.reused += 1
        if on_plan is not None:
            on_plan(len(cells), len(cells) - len(todo))
        if not execute:
            run.missing += len(todo)
            continue
        fresh = _execute(todo, out, executor, on_cell, len(cells) - len(todo), len(cells))
        run.results += fresh
        run.ran += len(fresh)
    return run
