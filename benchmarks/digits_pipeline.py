"""The digits pipeline end to end, timed, then the teacher (40 Heun steps) and the 1-step students side by side.

1. Runs the README's commands as subprocesses, each timed: ``bregzoo teach``, then ``bregzoo train
   --teacher DIR`` with reverse-kl and with lsif for every seed (``--jobs`` at a time, one core each).
2. Evaluates, in this process with one torch thread: the teacher at 40 Heun steps (79 network calls a
   sample) and each 1-step student, by digits-cnn FID/KID/precision/recall against the held-out test
   split (360 images), and by sampling time per image. Student and teacher of a seed draw the same noise.
3. Prints the mean ± std over seeds of each FID, the ratio of the student's mean FID to the teacher's
   (and per seed), the sampling-time ratio, with the FID of real train images and of uniform noise as
   the floor and the ceiling.

Usage: ``python benchmarks/digits_pipeline.py [--out-dir runs/digits] [--seeds 0 1 2] [--jobs 2] [--skip-train]``;
writes ``benchmarks/results/digits_pipeline.txt``. About 6 minutes for the teacher and 4 for each of the
six students (two at a time) on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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


def commands(out: Path, seeds: list[int]) -> tuple[list[str], dict[tuple[str, int], list[str]]]:
    """The README's pipeline commands (teach, then one train per divergence and seed)."""
    bz = str(Path(sys.executable).with_name("bregzoo"))
    teach = [bz, "teach", "--out", str(out / "teacher"), "-q"]
    train = {(d, s): [bz, "train", "--teacher", str(out / "teacher"), "--divergence", d, "--steps", "300",
                      "--batch-size", "64", "--seed", str(s), "--set", "optim.lr_generator=3e-4",
                      "--set", "optim.lr_fake=3e-4", "--set", "eval.samples=500",
                      "--out", str(student_dir(out, d, s)), "-q"]
             for s in seeds for d in DIVERGENCES}
    return teach, train


def student_dir(out: Path, divergence: str, seed: int) -> Path:
    return out / (f"student-{divergence}" if seed == 0 else f"student-{divergence}-s{seed}")


def run_pipeline(out: Path, seeds: list[int], jobs: int, lines: list[str]) -> None:
    teach, train = commands(out, seeds)
    started = time.perf_counter()
    subprocess.run(teach, check=True, cwd=ROOT)
    t_teach = time.perf_counter() - started
    lines.append(f"$ {' '.join(teach[1:])}\n  {t_teach:.0f} s")
    t0 = time.perf_counter()
    pending, running = list(train.items()), {}
    while pending or running:
        while pending and len(running) < jobs:
            key, cmd = pending.pop(0)
            running[key] = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
        time.sleep(1.0)
        for key, p in list(running.items()):
            if p.poll() is not None:
                if p.returncode != 0:
                    raise SystemExit(f"training {key} failed")
                del running[key]
    t_train = time.perf_counter() - t0
    for cmd in train.values():
        lines.append(f"$ {' '.join(cmd[1:])}")
    lines.append(f"  {len(train)} trainings, {jobs} at a time: {t_train:.0f} s")
    lines.append(f"teach + {len(train)} distillations: {t_teach + t_train:.0f} s ({(t_teach + t_train) / 60:.1f} min)")


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=Path("runs/digits"), help="where the teacher and students go")
    ap.add_argument("--skip-train", action="store_true", help="evaluate existing directories under --out-dir")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="training seeds; each student is scored with the evaluation noise of its own seed, "
                         "and so is the teacher, so student and teacher are compared seed by seed")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    ap.add_argument("-n", type=int, default=1000, help="samples per model for the metrics")
    ap.add_argument("--result", type=Path, default=ROOT / "benchmarks" / "results" / "digits_pipeline.txt")
    args = ap.parse_args()
    out = args.out_dir.resolve()
    load = os.getloadavg()[0]
    lines = [f"# bregzoo digits pipeline: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
             f"load avg {load:.2f} at start, git {git_revision()}",
             f"# command: python {' '.join(sys.argv)}", ""]
    if not args.skip_train:
        lines.append("## pipeline (the README's commands, timed)")
        run_pipeline(out, args.seeds, args.jobs, lines)
        lines.append("")

    started = time.perf_counter()
    torch.set_num_threads(1)
    teacher_spec = f"bregzoo:path={str(out / 'teacher')!r}"
    teacher = {s: evaluate_teacher(teacher_spec, "digits", "edm", METRICS, n=args.n, steps=40, method="heun", seed=s)
               for s in args.seeds}
    students = {(d, s): evaluate_student(str(student_dir(out, d, s)), METRICS, n=args.n, seed=s)
                for d in DIVERGENCES for s in args.seeds}
    test, _ = reference_dataset("digits")
    g = torch.Generator().manual_seed(0)
    train_real = run_metrics(reference_dataset("digits", "train")[0].sample(args.n, generator=g), test, METRICS)
    noise = run_metrics(torch.rand(args.n, 1, 8, 8, generator=g) * 2 - 1, test, METRICS)
    t_eval = time.perf_counter() - started

    lines.append(f"## digits-cnn metrics vs the test split (360 images), {args.n} samples each, "
                 f"evaluation seed = training seed")
    head = f"  {'':<34}{'FID':>8}{'KID':>8}{'prec':>7}{'recall':>8}{'NFE':>6}{'ms/image':>10}"
    lines.append(head)

    def row(name: str, m: dict, nfe: str = "", ms: str = "") -> str:
        return f"  {name:<34}{m['fid']:>8.2f}{m['kid']:>8.2f}{m['precision']:>7.2f}{m['recall']:>8.2f}{nfe:>6}{ms:>10}"

    lines.append(row("real train images", train_real))
    for s, t in teacher.items():
        lines.append(row(f"teacher, Heun 40 steps, seed {s}", t.metrics, str(t.nfe), f"{1e3 * t.seconds_per_image:.3f}"))
    for (d, s), r in students.items():
        lines.append(row(f"student {d}, 1 step, seed {s}", r.metrics, "1", f"{1e3 * r.seconds_per_image:.3f}"))
    lines.append(row("uniform noise", noise))
    lines.append("")
    fid_t = [teacher[s].metrics["fid"] for s in args.seeds]
    lines.append(f"## over {len(args.seeds)} seed(s) (mean ± std)")
    lines.append(f"  teacher (40 Heun steps) FID {mean_std(fid_t)}")
    sec_t = statistics.fmean(t.seconds_per_image for t in teacher.values())
    for d in DIVERGENCES:
        fid = [students[d, s].metrics["fid"] for s in args.seeds]
        ratios = [f / ft for f, ft in zip(fid, fid_t)]
        sec = statistics.fmean(students[d, s].seconds_per_image for s in args.seeds)
        lines.append(f"  student {d} (1 step) FID {mean_std(fid)}; mean FID / teacher's mean FID = "
                     f"{statistics.fmean(fid) / statistics.fmean(fid_t):.2f}x (per seed: "
                     f"{', '.join(f'{x:.2f}x' for x in ratios)}); sampling {sec_t / sec:.0f}x faster per image")
    lines.append(f"  (evaluation itself: {t_eval:.0f} s; batches of 500 on 1 torch thread)")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    io.write_text(args.result, text)


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "") if rev else "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
