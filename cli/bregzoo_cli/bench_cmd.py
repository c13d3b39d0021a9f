"""``bregzoo bench``: run a suite of identical-budget cells and write the leaderboard (md, csv, json, png)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bregzoo.errors import BregzooError


def bench(
    suite: Annotated[str, typer.Option(
        "--suite", "-s", help="'quick', 'standard' (benchmarks/suites/NAME.toml) or a suite .toml FILE.")] = "quick",
    divergence: Annotated[str, typer.Option(
        "--divergence", "-d", help="Only divergences matching this fnmatch pattern ('*kl*').")] = "*",
    task: Annotated[str, typer.Option("--task", "-t", help="Only tasks matching this fnmatch pattern.")] = "*",
    group: Annotated[str, typer.Option(
        "--group", "-g", help="Only the suite's groups whose name matches this fnmatch pattern (each group of "
                              "'standard' fits 2 hours on 2 cores).")] = "*",
    seeds: Annotated[Optional[int], typer.Option(
        "--seeds", min=1, help="Seeds per cell (overrides the suite's count for every group).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output directory (default: bench/<suite>). Finished cells there are reused.")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=1, help="Parallel worker processes (one torch thread each).")] = min(2, os.cpu_count() or 1),
    executor: Annotated[str, typer.Option(
        help="Where cells run: 'local' (--workers processes here) or 'ray' (one Ray task per cell; "
             "needs bregzoo's 'ray' extra).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(
        help="With --executor ray: the cluster to join ('auto', or ray://HOST:10001). [default: start a local "
             "Ray instance]")] = None,
    gpus_per_cell: Annotated[float, typer.Option(
        min=0, help="With --executor ray: GPUs reserved for each cell (1 on a GPU cluster).")] = 0.0,
    cpus_per_cell: Annotated[float, typer.Option(
        min=0.01, help="With --executor ray: CPUs reserved for each cell (its torch threads).")] = 1.0,
    report_only: Annotated[bool, typer.Option(
        "--report-only", help="Run nothing: write the leaderboard from the cells already finished in OUT.")] = False,
    compare: Annotated[Optional[tuple[Path, Path]], typer.Option(
        "--compare", help="Print what changed between two leaderboard.json files A B, then exit.")] = None,
) -> None:
    """Fair leaderboard of divergences: same teacher, budget and seeds for every cell.

    Resumable: each finished cell is saved to OUT/cells/ and skipped on the next run, so a long suite
    may run across several sittings, and on either executor: a cell finished on a Ray cluster is reused
    by a local run and the other way round.
    """
    from bregzoo import bench as core
    from bregzoo.bench.executors import ExecutorSpec

    console = Console()
    if compare:
        typer.echo(core.to_text(core.compare(core.load_board(compare[0]), core.load_board(compare[1]))), nl=False)
        return
    if executor == "local" and (ray_address is not None or gpus_per_cell):
        raise BregzooError("--ray-address and --gpus-per-cell are for --executor ray")
    where = ExecutorSpec(executor, workers=workers, ray_address=ray_address, cpus_per_cell=cpus_per_cell,
                         gpus_per_cell=gpus_per_cell)
    spec = core.load_suite(suite)
    out = out or Path("bench") / spec.name
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[last]}"), console=console, transient=False) as bar:
        state: dict[str, int] = {}

        def on_plan(total: int, reused: int) -> None:
            state["id"] = bar.add_task(f"{spec.name}", total=total, completed=reused,
                                       last=f"{reused} reused" if reused else "")

        def on_cell(cell, rec, done, total) -> None:  # noqa: ANN001 - rich callback
            p = rec.get("student", {}).get(spec.primary_of(cell.task))
            what = f"{p:.4g}" if isinstance(p, float) else rec.get("status")
            bar.update(state["id"], completed=done, last=f"{cell.id}: {spec.primary_of(cell.task)}={what}")

        run = core.run_suite(spec, out, workers=workers, seeds=seeds, divergence=divergence, task=task,
                             on_cell=on_cell, on_plan=on_plan, execute=not report_only, executor=where,
                             groups=group)
    if not run.results and report_only:
        raise BregzooError(f"--report-only: no finished cell of suite {spec.name!r} (matching the filters) in "
                           f"{out / 'cells'}; run the suite into --out first")
    if not run.results:
        notes = "; ".join(s["note"] for s in run.skipped)
        raise BregzooError(f"no cell of suite {spec.name!r} matches --group {group!r} --divergence {divergence!r} "
                           f"--task {task!r} (groups: {', '.join(g.name for g in spec.groups)})"
                           + (f" ({notes})" if notes else ""))
    board = core.write_outputs(spec, run, out)
    from bregzoo.bench.leaderboard import rank_text
    for name, t in board["tasks"].items():
        table = Table(title=f"{name}: ranked by {t['primary']}")
        for col in ("rank", "divergence", t["primary"], "Δ vs reverse-kl", "s/run"):
            table.add_column(col)
        for r in t["rows"]:
            s = r["metrics"].get(t["primary"], {})
            d = r["delta_vs_baseline_pct"].get(t["primary"])
            table.add_row(rank_text(r["rank"]), r["name"],
                          "failed" if s.get("mean") is None else f"{s['mean']:.4g}"
                          + (f" ± {s['std']:.2g}" if s.get("std") is not None else ""),
                          "—" if d is None else f"{d:+.1f}%", f"{r['seconds']:.1f}")
        console.print(table)
    for s in run.skipped:
        console.print(f"[yellow]skipped group {s['group']}[/yellow]: {s['note']}")
    if run.missing:
        console.print(f"[yellow]{run.missing} cells not finished yet[/yellow] (rerun without --report-only to run them)")
    console.print(f"{run.ran} cells run, {run.reused} reused; wrote {out}/leaderboard.md, .csv, .json, .png")
