"""Where a suite's cells run: worker processes on this machine, or Ray tasks on a cluster.

Both yield finished (cell, record) pairs in completion order; the runner writes each record to
``OUT/cells/<id>.json`` on the machine that drives the suite. That file is the one source of truth:
a cell finished by any executor, anywhere, is reused by the next run of either, and a cell whose
worker died is simply missing and runs again.

- ``local``: ``workers`` spawned processes with one torch thread each (or the calling process for one).
- ``ray``: one Ray task per cell, with ``cpus_per_cell`` CPUs and ``gpus_per_cell`` GPUs reserved for it,
  so Ray places cells on a cluster's nodes (``ray_address``: ``"auto"`` joins the cluster this machine
  belongs to; None starts a local Ray instance, the same code on one machine). A task trains in a
  scratch directory of its own node and returns the record, so the nodes need no shared filesystem;
  a dataset or teacher directory that a cell reads must exist at the same path on every node.
  Ray is an optional extra: ``pip install 'bregzoo[ray]'``.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Iterator

from bregzoo.bench.suite import Cell
from bregzoo.errors import BregzooError

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run cells: ``kind`` is "local" or "ray"; the rest applies to its kind only."""

    kind: str = "local"
    workers: int = 1  # local: worker processes
    ray_address: str | None = None  # ray: None starts a local instance; "auto" or "ray://host:10001" joins one
    cpus_per_cell: float = 1.0  # ray: CPUs reserved per cell (and torch threads in it)
    gpus_per_cell: float = 0.0  # ray: GPUs reserved per cell (1 on a GPU cluster)

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise BregzooError(f"unknown executor {self.kind!r}; choose one of {', '.join(EXECUTORS)}")
        if self.workers < 1 or self.cpus_per_cell <= 0 or self.gpus_per_cell < 0:
            raise BregzooError(f"executor needs workers >= 1, cpus_per_cell > 0 and gpus_per_cell >= 0; got "
                               f"{self.workers}, {self.cpus_per_cell}, {self.gpus_per_cell}")


def run_cells(cells: list[Cell], out: str, spec: ExecutorSpec) -> Iterator[tuple[Cell, dict[str, Any]]]:
    """Run ``cells`` with the executor ``spec`` names; yield each (cell, record) as it finishes."""
    if not cells:
        return iter(())
    return _ray(cells, spec) if spec.kind == "ray" else _local(cells, out, spec.workers)


def _worker_init(threads: int = 1) -> None:
    import torch

    torch.set_num_threads(threads)  # small 2-D nets: one thread per worker beats contended OpenMP pools


def _local(cells: list[Cell], out: str, workers: int) -> Iterator[tuple[Cell, dict[str, Any]]]:
    from bregzoo.bench.runner import run_cell

    if workers <= 1 or len(cells) <= 1:
        for cell in cells:
            yield cell, run_cell(cell, out)
        return
    # spawn, not fork: forking a process whose torch thread pools are already running can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_worker_init) as pool:
        pending = {pool.submit(run_cell, c, out): c for c in cells}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield pending.pop(fut), fut.result()


def _run_cell_in_scratch(cell: Cell, threads: int) -> dict[str, Any]:
    """A Ray task's body: train the cell in a scratch directory of the node it landed on."""
    from bregzoo.bench.runner import run_cell

    _worker_init(max(1, threads))
    with tempfile.TemporaryDirectory(prefix="bregzoo-cell-") as scratch:
        rec = run_cell(cell, scratch)
    rec["node"] = os.uname().nodename
    return rec


def _ray(cells: list[Cell], spec: ExecutorSpec) -> Iterator[tuple[Cell, dict[str, Any]]]:
    try:
        import ray
    except ImportError:
        raise BregzooError("--executor ray needs Ray: pip install 'bregzoo[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if spec.ray_address is None:  # a local instance with this machine's CPUs (and GPUs, as Ray finds them)
            kwargs["num_cpus"] = os.cpu_count() or 1
        ray.init(address=spec.ray_address, **kwargs)
    try:
        task = ray.remote(num_cpus=spec.cpus_per_cell, num_gpus=spec.gpus_per_cell, max_retries=1)(_run_cell_in_scratch)
        threads = int(spec.cpus_per_cell)
        pending = {task.remote(c, threads): c for c in cells}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                try:
                    yield cell, ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task or its node died: a failed cell, run again next time
                    yield cell, {"id": cell.id, "status": "failed", "student": {}, "teacher": {}, "seconds": 0.0,
                                 "error": f"ray task failed: {type(exc).__name__}: {exc}".splitlines()[0][:500]}
    finally:
        if started_here:
            ray.shutdown()
