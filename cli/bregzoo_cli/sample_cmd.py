"""``bregzoo sample``: draw samples from a trained student, with the steps it was trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def sample(
    run: Annotated[Path, typer.Argument(help="A run directory or a generator .safetensors file.")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 10000,
    out: Annotated[Path, typer.Option(help="Where to write: .pt (a tensor, torch.load(weights_only=True)) or .png.")] = Path("samples.pt"),
    seed: Annotated[int, typer.Option(help="Seed of the input noise.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
) -> None:
    """Sample a trained student: k network calls per sample, the train.student_steps stored in its generator (1 by default)."""
    import torch

    from bregzoo import BregzooError, io
    from bregzoo.train import load_student
    from bregzoo.train.plots import save_samples_png

    if n < 1:
        raise BregzooError(f"-n must be >= 1, got {n}")
    if out.suffix not in (".pt", ".png"):
        raise BregzooError(f"--out {out}: use a .pt or .png file name")
    io.check_device(device)
    student = load_student(run)
    x = student.sample(n, seed=seed, device=device)
    if out.suffix == ".pt":
        import io as _io

        buf = _io.BytesIO()
        torch.save(x, buf)
        io.write_bytes(out, buf.getvalue())
    else:
        save_samples_png(out, {f"student ({n} samples, {student.steps}-step, step {student.step})": x}, student.dataset,
                         suptitle=f"{student.config.task}  divergence={student.config.divergence}")
    typer.echo(f"wrote {n} samples of shape {tuple(x.shape[1:])} to {out} ({student.steps}-step student)")
