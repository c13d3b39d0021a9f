"""``bregzoo teach``: train a diffusion teacher on a dataset (EDM objective), saved as a teacher directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def teach(
    dataset: Annotated[Optional[str], typer.Option(help="Dataset, e.g. digits, cifar10:root=DIR, image-folder:root=DIR. [default: digits]")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="Denoiser network. [default: unet:channels=32,mults=1x2,blocks=1,attn=none]")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="Noise schedule the teacher is trained (and later distilled) under: edm or vp. [default: edm]")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Adam steps (with --resume: the new total). [default: 1500]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size. [default: 128]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate. [default: 2e-3]")] = None,
    ema: Annotated[Optional[float], typer.Option(help="EMA decay of the saved weights. [default: 0.995]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of all training randomness (a CPU run resumes bitwise).")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Sampler stored with the teacher: heun or euler. [default: heun]")] = None,
    sampler_steps: Annotated[Optional[int], typer.Option(help="Sampler steps stored with the teacher. [default: 40]")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Steps between checkpoints. [default: 500]")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Teacher directory. [default: teachers/<dataset>-<backbone>-<schedule>]")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the teacher in this directory from its latest checkpoint.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config as JSON and stop.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a diffusion teacher on CPU or GPU and save it as a teacher directory for 'bregzoo train --teacher DIR'.

    With no options: a 0.7M-parameter UNet on the 8x8 digits, a few minutes on two CPU cores.
    """
    import json

    from bregzoo import BregzooError
    from bregzoo.teach import TeachConfig, default_out, resume_config
    from bregzoo.teach import teach as run_teach

    named = {"dataset": dataset, "backbone": backbone, "schedule": schedule, "steps": steps, "batch_size": batch_size,
             "lr": lr, "ema": ema, "seed": seed, "sampler": sampler, "sampler_steps": sampler_steps,
             "checkpoint_every": checkpoint_every}
    given = {k: v for k, v in named.items() if v is not None}
    if resume is not None:
        changed = sorted(set(given) - {"steps", "checkpoint_every"})
        if changed or (out is not None and out != resume):
            raise BregzooError(f"--resume continues the teacher as it was configured; only --steps and --checkpoint-every "
                               f"may change (got {', '.join(changed) or '--out'})")
        cfg = resume_config(resume).replace(**given)
    else:
        cfg = TeachConfig().replace(**given)
        cfg = cfg.replace(out=str(out) if out is not None else default_out(cfg))
    if dry_run:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]teach"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                   TextColumn("{task.fields[info]}"), disable=quiet)
    with bar:
        task = bar.add_task("teach", total=cfg.steps, info="")

        def progress(step: int, total: int, logs: dict[str, float]) -> None:
            info = f"loss {logs['loss']:.4g}" if "loss" in logs else ""
            bar.update(task, completed=step, total=total, info=info)

        result = run_teach(cfg, resume=resume is not None, progress=progress)
    Console().print(f"teacher: {result.steps} steps in {result.seconds:.0f} s, final loss {result.loss:.4g} -> {result.out}  "
                    f"(samples: {result.out / 'samples.png'})")
