"""The digits pipeline end to end, timed, then the teacher (40 Heun steps) and the 1-step students side by side.

1. Runs the README's commands as subprocesses, each timed: ``bregzoo teach``, then ``bregzoo train
   --teacher DIR`` with reverse-kl and with lsif (the two trainings run at the same time, one core each).
2. Evaluates, in this process and with the same noise seed, sample count, batch and one torch thread:
   the teacher at 40 Heun steps (79 network calls a sample) and each student at 1 step, by digits-cnn
   FID/KID/precision/recall against the held-out test split (360 images), and by sampling time per image.
3. Prints the FID ratio (student / teacher) and the sampling-time ratio (teacher / student), with the
   FID of real train images and of uniform noise as the floor and the ceiling.

Usage: ``python benchmarks/digits_pipeline.py [--out-dir runs/digits] [--skip-train] [-n 1000]``;
writes ``benchmarks/results/digits_pipeline.txt``. About 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from bregzoo import io
from bregzoo.evaluation import evaluate_student, evaluate_teacher, reference_dataset, run_metrics

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("fid", "kid", "prc")
DIVERGENCES = ("reverse-kl", "lsif")


def commands(out: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The README's pipeline commands (teach, then one train per divergence)."""
    bz = str(Path(sys.executable).with_name("bregzoo"))
    teach = [bz, "teach", "--out", str(out / "teacher"), "-q"]
    train = {d: [bz, "train", "--teacher", str(out / "teacher"), "--divergence", d, "--steps", "300", "--batch-size", "64",
                 "--set", "optim.lr_generator=3e-4", "--set", "optim.lr_fake=3e-4", "--set", "eval.samples=500", "--out", str(out / f"student-{d}"), "-q"] for d in DIVERGENCES}
    return teach, train


def run_pipeline(out: Path, lines: list[str]) -> None:
    teach, train = commands(out)
    started = time.perf_counter()
    subprocess.run(teach, check=True, cwd=ROOT)
    t_teach = time.perf_counter() - started
    lines.append(f"$ {' '.join(teach[1:])}\n  {t_teach:.0f} s")
    t0 = time.perf_counter()
    procs = {d: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL) for d, cmd in train.items()}
    for d, p in procs.items():
        if p.wait() != 0:
            raise SystemExit(f"training {d} failed")
    t_train = time.perf_counter() - t0
    for d in DIVERGENCES:
        lines.append(f"$ {' '.join(train[d][1:])} &")
    lines.append(f"  both trainings, in parallel: {t_train:.0f} s")
    lines.append(f"teach + 2 distillations: {t_teach + t_train:.0f} s ({(t_teach + t_train) / 60:.1f} min)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("runs/digits"), help="where the teacher and students go")
    ap.add_argument("--skip-train", action="store_true", help="evaluate existing directories under --out-dir")
    ap.add_argument("-n", type=int, default=1000, help="samples per model for the metrics")
    ap.add_argument("--result", type=Path, default=ROOT / "benchmarks" / "results" / "digits_pipeline.txt")
    args = ap.parse_args()
    out = args.out_dir.resolve()
    load = os.getloadavg()[0]
    lines = [f"# bregzoo digits pipeline: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"load avg {load:.2f} at start",
             f"# command: python {' '.join(sys.argv)}", ""]
    if not args.skip_train:
        lines.append("## pipeline (the README's commands, timed)")
        run_pipeline(out, lines)
        lines.append("")

    started = time.perf_counter()
    torch.set_num_threads(1)
    teacher_spec = f"bregzoo:path={str(out / 'teacher')!r}"
    teacher = evaluate_teacher(teacher_spec, "digits", "edm", METRICS, n=args.n, steps=40, method="heun", seed=0)
    students = {d: evaluate_student(str(out / f"student-{d}"), METRICS, n=args.n, seed=0) for d in DIVERGENCES}
    test, _ = reference_dataset("digits")
    g = torch.Generator().manual_seed(0)
    train_real = run_metrics(reference_dataset("digits", "train")[0].sample(args.n, generator=g), test, METRICS)
    noise = run_metrics(torch.rand(args.n, 1, 8, 8, generator=g) * 2 - 1, test, METRICS)
    t_eval = time.perf_counter() - started

    lines.append(f"## digits-cnn metrics vs the test split (360 images), {args.n} samples each, seed 0")
    head = f"  {'':<28}{'FID':>8}{'KID':>8}{'prec':>7}{'recall':>8}{'NFE':>6}{'ms/image':>10}"
    lines.append(head)

    def row(name: str, m: dict, nfe: str = "", ms: str = "") -> str:
        return f"  {name:<28}{m['fid']:>8.2f}{m['kid']:>8.2f}{m['precision']:>7.2f}{m['recall']:>8.2f}{nfe:>6}{ms:>10}"

    lines.append(row("real train images", train_real))
    lines.append(row("teacher, Heun 40 steps", teacher.metrics, str(teacher.nfe), f"{1e3 * teacher.seconds_per_image:.3f}"))
    for d, r in students.items():
        lines.append(row(f"student {d}, 1 step", r.metrics, "1", f"{1e3 * r.seconds_per_image:.3f}"))
    lines.append(row("uniform noise", noise))
    lines.append("")
    lines.append("## side by side")
    for d, r in students.items():
        lines.append(f"  FID ratio, student {d} (1 step) / teacher (40 steps): "
                     f"{r.metrics['fid']:.2f} / {teacher.metrics['fid']:.2f} = {r.metrics['fid'] / teacher.metrics['fid']:.2f}x")
    for d, r in students.items():
        lines.append(f"  sampling time per image, teacher (40 steps) / student {d} (1 step): "
                     f"{1e3 * teacher.seconds_per_image:.3f} ms / {1e3 * r.seconds_per_image:.4f} ms = "
                     f"{teacher.seconds_per_image / r.seconds_per_image:.0f}x faster")
    lines.append(f"  (evaluation itself: {t_eval:.0f} s; batches of 500 on 1 torch thread)")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    io.write_text(args.result, text)


if __name__ == "__main__":
    main()
