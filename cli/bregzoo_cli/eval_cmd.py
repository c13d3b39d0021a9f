"""``bregzoo eval``: FID/KID/precision-recall (or any registered metric) of a student or a teacher's sampler."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer


def evaluate(
    target: Annotated[str, typer.Argument(metavar="RUN_OR_TEACHER", help="A run directory (or generator .safetensors): the student, at the steps it was trained with. A teacher directory, a converted (e.g. EDM) directory, a diffusers DDPM folder or a teacher name: its K-step sampler.")],
    metrics: Annotated[Optional[str], typer.Option(help="Comma-separated metric names (see 'bregzoo plugins'), e.g. fid,kid,prc. [default: the run's own final metrics; for a teacher fid,kid,prc on images, the exact mixture metrics on vectors]")] = None,
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 1000,
    steps: Annotated[Optional[int], typer.Option(help="Teacher sampler steps K. [default: the teacher's own, else 40]")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Teacher sampler: heun or euler. [default: the teacher's own, else heun]")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="Reference dataset. [default: the run's or teacher's own]")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="Schedule for a teacher given by name, converted directory or diffusers folder. [default: a converted directory's suggestion, else vp]")] = None,
    split: Annotated[str, typer.Option(help="Reference split when the dataset has splits ('none': the dataset as given).")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the sampling noise.")] = 0,
    batch: Annotated[int, typer.Option(help="Sampling batch size.")] = 500,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default).")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate a student (a run, at its stored steps) or a teacher at K sampler steps against the dataset's test split."""
    import json

    import torch

    from bregzoo import BregzooError
    from bregzoo.evaluation import evaluate_student, evaluate_teacher
    from bregzoo.train.rundir import is_run_dir
    from bregzoo_cli.teacher_arg import resolve_teacher, same_schedule

    if batch < 1:
        raise BregzooError(f"--batch must be >= 1, got {batch}")
    if threads < 0:
        raise BregzooError(f"--threads must be >= 0 (0: torch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    names = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics is not None else None
    if names == ():
        raise BregzooError("--metrics is empty; give e.g. --metrics fid,kid,prc, or leave it out")
    split_arg = None if split.lower() == "none" else split
    path = Path(os.path.expanduser(target))
    if is_run_dir(path) or (path.is_file() and path.suffix == ".safetensors"):
        if steps is not None or sampler is not None:
            raise BregzooError("a student samples with the steps it was trained with (train.student_steps, stored "
                               "in its generator file); --steps/--sampler apply to teachers only")
        result = evaluate_student(str(path), names, n=n, seed=seed, batch=batch, dataset=dataset, split=split_arg)
    else:
        arg = resolve_teacher(target)
        if arg.schedule and schedule and not same_schedule(arg.schedule, schedule):
            raise BregzooError(f"the teacher was trained with schedule {arg.schedule!r}; leave --schedule out")
        data = dataset or arg.dataset
        if data is None:
            raise BregzooError(f"teacher {target!r} has no dataset of its own; give --dataset, e.g. --dataset gmm8")
        result = evaluate_teacher(arg.spec, data, arg.schedule or schedule or arg.suggested_schedule or "vp", names, n=n,
                                  steps=steps or arg.sampler_steps or 40, method=sampler or arg.sampler_method or "heun",
                                  seed=seed, batch=batch, split=split_arg)
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _table(result)


def _table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    what = f"student, {result.steps} step{'' if result.steps == 1 else 's'}" if result.kind == "student" else f"teacher, {result.steps} steps ({result.nfe} NFE)"
    table = Table(title=f"{what}, n={result.n}", caption=f"{result.source} vs {result.dataset}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4g}")
    table.add_row("sampling s/image", f"{result.seconds_per_image:.3g}")
    Console().print(table)
