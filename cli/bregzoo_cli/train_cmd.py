"""``bregzoo train``: distill a teacher into a one-step (or k-step) generator (the Di-Bregman loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def _parse_set(items: list[str]) -> dict[str, Any]:
    from bregzoo import BregzooError
    from bregzoo.registry import _parse_value

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise BregzooError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr_generator=1e-3")
        v = _parse_value(value.strip())
        tp = _field_type(key.strip())
        # A str key takes the text as written ('none' is weighting.normalize's value, not null; --set out=123
        # is a folder); an Optional[str] one still reads none/null as None.
        if (tp is str or tp == Optional[str]) and not isinstance(v, str) and not (v is None and tp != str):
            v = value.strip()
        out[key.strip()] = list(v) if isinstance(v, tuple) else v
    return out


def _field_type(key: str) -> Any:
    """The annotation of the config field at a dotted key, or None when there is no such field."""
    import dataclasses
    import typing

    from bregzoo.config import RunConfig

    tp: Any = RunConfig
    for part in key.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        tp = typing.get_type_hints(tp).get(part)
    return tp


def resolve_config(config: Optional[Path], resume: Optional[Path], overrides: dict[str, Any]):
    """defaults < --config file (or the resumed run's config.json) < command-line options."""
    from bregzoo import BregzooError
    from bregzoo.config import RunConfig

    if resume is not None:
        from bregzoo.train.rundir import RESUMABLE  # more steps, the log/eval/checkpoint cadence; nothing else

        if config is not None:
            raise BregzooError("--resume continues a run with its own config.json; drop --config")
        changed = sorted(k for k in overrides if k not in RESUMABLE and k != "out")
        if changed:
            raise BregzooError(
                f"cannot change {', '.join(changed)} when resuming (a resumed run must match the original); "
                f"only {', '.join(sorted(RESUMABLE))} may change"
            )
        from bregzoo.train.rundir import existing

        existing(resume)  # a clear error for a directory that is not a resumable run
        overrides = {**overrides, "out": str(resume)}
        base = RunConfig.load(resume)
    else:
        base = RunConfig.load(config) if config is not None else RunConfig()
    return base.replace(**overrides)


def train(
    task: Annotated[Optional[str], typer.Option(help="Task (dataset), e.g. gmm8, gmm25, gmm-unbalanced. [default: gmm8]")] = None,
    divergence: Annotated[Optional[str], typer.Option(help="Bregman generator h weighting the generator, e.g. reverse-kl, lsif, power:alpha=0.5 (see 'bregzoo divergences').")] = None,
    estimator: Annotated[Optional[str], typer.Option(help="Ratio-estimator loss: classifier, lsif, kliep, bregman:h=NAME.")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="Network for generator, fake denoiser and estimator, e.g. mlp:width=128.")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher: a name, e.g. analytic-gmm (exact mixture denoiser), or a directory: from 'bregzoo teach' (its task, schedule and backbone are adopted), from 'bregzoo convert' (e.g. an EDM network: its task and suggested schedule) or a diffusers DDPM folder.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Data folder of the task (sets its root=), e.g. the CIFAR-10 folder.")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="Noise schedule: vp or edm (optionally vp:beta_max=20).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Generator steps (with --resume: the new total).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch per process and micro-batch.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of all training randomness (CPU runs are bitwise reproducible).")] = None,
    mixed_precision: Annotated[Optional[str], typer.Option(help="no, bf16 or fp16.")] = None,
    student_steps: Annotated[Optional[int], typer.Option(help="Generator calls per sample: a k-step student (DMD2's multi-step schedule), re-noised between steps; levels: --set train.student_times=[...]. Stored with the student, so sample and eval use it. [default: 1]")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory. [default: runs/<task>-<divergence>-s<seed>]")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory from its latest checkpoint.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A .toml or .json config (a run's config.json works too).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any config key, dotted: --set optim.lr_generator=1e-3 (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every component name and parameter, print the resolved config as JSON and stop.")] = False,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the quick unification checks before training.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Train even if a unification check fails.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run in --out, or reuse an --out directory that is not a bregzoo run (only a run's own files are replaced). Without it an existing --out is refused.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no metrics table: one summary line at the end (the metrics are in the run directory's metrics.jsonl).")] = False,
) -> None:
    """Distill a teacher into a one-step (or --student-steps k) generator by Bregman density-ratio matching (Di-Bregman).

    With no options: the exact 8-Gaussian ring teacher, distilled in about a minute or two on a CPU.
    Scale out with `accelerate launch -m bregzoo_cli.app train ...` (see the README).
    """
    from bregzoo.train import train as run_training
    from bregzoo.train.loop import default_out

    named = {"task": task, "divergence": divergence, "estimator": estimator, "backbone": backbone,
             "teacher": teacher, "schedule": schedule, "train.steps": steps, "train.batch_size": batch_size,
             "train.seed": seed, "train.mixed_precision": mixed_precision, "train.student_steps": student_steps,
             "out": str(out) if out else None}
    overrides = {**_parse_set(set_ or []), **{k: v for k, v in named.items() if v is not None}}
    if resume is None and ("teacher" in overrides or data is not None):
        from bregzoo_cli.teacher_arg import adopt_teacher  # --teacher DIR: adopt its schedule, task, backbone

        overrides = adopt_teacher(overrides, data)
    cfg = resolve_config(config, resume, overrides)
    if cfg.out is None:
        cfg = cfg.replace(out=default_out(cfg))
    if dry_run:  # resolve every component as a run would (no networks, no data): no misspelt name or parameter slips by
        from bregzoo.train.build import resolve

        resolve(cfg)
        typer.echo(cfg.to_json(), nl=False)
        return

    with _Progress(enabled=not quiet) as progress:  # the loop only reports progress on the main process
        result = run_training(cfg, resume=resume is not None, overwrite=overwrite, check=not no_check,
                              force=force, progress=progress.update)
    if result.main_process:
        _report(result, quiet)


class _Progress:
    """A rich progress bar with the live loss and the latest metric (main process only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar, self.task = enabled, None, None

    def __enter__(self) -> "_Progress":
        return self

    def update(self, step: int, total: int, logs: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is None:  # created on the first update, which only the main process receives
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
            self.bar.__enter__()
        if self.task is None:
            self.task = self.bar.add_task("train", total=total, completed=0, info="")
        keys = [("loss_dm", "loss"), ("loss_fake", "fake"), ("loss_est", "est"), ("mode_recall", "modes"),
                ("mmd2", "mmd²")]
        info = "  ".join(f"{label} {logs[k]:.4g}" for k, label in keys if k in logs)
        self.bar.update(self.task, completed=step, total=total, info=info)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _report(result: Any, quiet: bool = False) -> None:
    """The end-of-run table: each metric with its direction, the student beside the teacher sampler
    and the exact-sample floor, and which side the student is on."""
    passed = sum(bool(c.get("passed")) for c in result.checks)
    if quiet:
        checks = f"; {passed}/{len(result.checks)} claims passed" if result.checks else ""
        typer.echo(f"trained {result.steps} steps in {result.seconds:.0f} s -> {result.run_dir}{checks}")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if result.checks:
        console.print(f"checks: {passed}/{len(result.checks)} unification claims passed (recorded in config.json)")
    table = Table(title=f"{result.steps} steps in {result.seconds:.0f} s  ->  {result.run_dir}")
    table.add_column("metric")
    table.add_column("better", style="dim")
    k = getattr(result, "student_steps", 1)
    table.add_column(f"student ({k} step{'' if k == 1 else 's'})", justify="right")
    table.add_column("teacher sampler", justify="right")
    if result.exact:
        table.add_column("exact samples (floor)", justify="right")
    table.add_column("student vs teacher")
    fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
    for key in result.student:
        better = result.better.get(key, "")
        cells = [fmt(result.student[key]), fmt(result.teacher.get(key))]
        table.add_row(key, better, *cells, *([fmt(result.exact.get(key))] if result.exact else []),
                      verdict(better, result.student[key], result.teacher.get(key), result.exact.get(key)))
    console.print(table)
    console.print(f"samples: {Path(result.run_dir) / 'samples.png'}   weights: {Path(result.run_dir) / 'generator.safetensors'}")


def verdict(better: str, student: float, teacher: float | None, exact: float | None) -> str:
    """The student against the teacher sampler, read the way the metric says ("" when it says nothing)."""
    if teacher is None or better not in ("lower", "higher", "exact"):
        return ""
    if better == "exact":
        if exact is None:
            return ""
        gap = abs(student - exact) - abs(teacher - exact)
        return "closer to exact" if gap <= 0 else "further from exact"
    wins = student <= teacher if better == "lower" else student >= teacher
    return "as good or better" if wins else "worse"
