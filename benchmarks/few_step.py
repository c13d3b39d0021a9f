"""1-, 2- and 4-step students against the teacher's sampler: quality against sampling speed.

For every task, seed and k, one ``bregzoo.train`` run with ``train.student_steps = k`` and otherwise the
task's recipe: ``bregzoo train``'s defaults on the 2-D tasks, and on digits the README's digits commands
(``bregzoo train --teacher DIR --steps 300 --batch-size 64`` with the generator and fake learning rates
at 3e-4) on a teacher from ``bregzoo teach`` (trained first when ``--digits-teacher`` does not exist).
Only k changes between the students of a task and seed; ``--steps`` sets every run's budget.

Quality is read as in the other studies. A 2-D student against the task's exact samples (the floor:
the biased MMD² of an independent exact set) and the exact teacher's 40-step Heun sampler from s = 80,
from the run's own evaluation (``distill_2d.py``). A digits student by digits-cnn FID/KID/precision/
recall against the held-out test split, beside real train images (the floor) and the teacher at 40
Heun steps (``digits_pipeline.py``). Speed is the wall time to draw 1000 samples in one batch on one
torch thread, the median of ``--timing-rounds``, measured for every student and for the teacher
sampler after all training has finished (so no training competes with it for the cores).

Usage: ``python benchmarks/few_step.py [--tasks gmm8 digits] [--seeds 0 1 2] [--ks 1 2 4] [--steps N]
[--jobs 2] [--digits-teacher runs/digits/teacher] [--out benchmarks/results/few_step.md]``; writes the
markdown table and a JSON of every cell (the command, revision and machine in the header of both).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from recipe_study import _ms, header, ratio_of_means  # noqa: E402

from bregzoo import io  # noqa: E402
from bregzoo.config import RunConfig  # noqa: E402

TASKS = ("gmm8", "digits")
KS = (1, 2, 4)
IMAGE_TASKS = {"digits"}
IMAGE_METRICS = ("fid", "kid", "prc")
# The README's digits commands (and benchmarks/digits_pipeline.py): the recipe the digits students use.
DIGITS_RECIPE = {"train.steps": 300, "train.batch_size": 64, "optim.lr_generator": 3e-4, "optim.lr_fake": 3e-4,
                 "eval.samples": 500}
NEVER = 10**9  # no intermediate evaluation or checkpoint: only the final student is measured


def cell_config(task: str, k: int, seed: int, steps: int | None, teacher_dir: Path, work: Path) -> RunConfig:
    """The run of one (task, k, seed) cell: the task's recipe with train.student_steps = k."""
    over = {"train.seed": seed, "train.student_steps": k, "train.checkpoint_every": NEVER, "train.eval_every": NEVER}
    if task in IMAGE_TASKS:
        from bregzoo_cli.teacher_arg import adopt_teacher  # exactly what `bregzoo train --teacher DIR` adopts

        over = adopt_teacher({"teacher": str(teacher_dir), **DIGITS_RECIPE, **over})
    else:
        over["task"] = task
    if steps is not None:
        over["train.steps"] = steps
    return RunConfig().replace(**over).replace(out=str(work / f"{task}-k{k}-s{seed}"))


def run_cell(task: str, k: int, seed: int, steps: int | None, teacher_dir: Path, work: Path) -> dict:
    """Train one student (in a worker process); its run directory stays for the evaluation and timing."""
    from bregzoo.train import train

    torch.set_num_threads(1)
    row = {"task": task, "k": k, "seed": seed}
    started = time.perf_counter()
    try:
        result = train(cell_config(task, k, seed, steps, teacher_dir, work), check=False)
    except Exception as exc:  # a diverging run is a result, not a crash of the benchmark
        return {**row, "error": f"{type(exc).__name__}: {exc}"[:400], "seconds": time.perf_counter() - started}
    return {**row, "run_dir": str(result.run_dir), "seconds": result.seconds, "steps": result.steps,
            "student": result.student, "teacher": result.teacher, "exact": result.exact}


def ensure_teacher(path: Path, steps: int | None) -> float:
    """Train the digits teacher with `bregzoo teach`'s defaults when ``path`` holds none; its seconds (0: there)."""
    from bregzoo.teach import TeachConfig, teach
    from bregzoo.teacher_dir import is_teacher_dir

    if is_teacher_dir(path):
        return 0.0
    cfg = TeachConfig().replace(out=str(path), **({"steps": steps} if steps else {}))
    print(f"training the digits teacher in {path} ({cfg.steps} steps)", flush=True)
    return teach(cfg).seconds


# -- quality on images: the held-out test split (as benchmarks/digits_pipeline.py) --------------------

def image_quality(rows: list[dict], teacher_dir: Path, n: int) -> dict:
    """Digits students, the teacher at its stored sampler settings and real train images, all by
    digits-cnn metrics against the test split; the rows' ``student``, ``teacher`` and ``exact`` are set."""
    from bregzoo.evaluation import evaluate_student, evaluate_teacher, reference_dataset, run_metrics
    from bregzoo_cli.teacher_arg import resolve_teacher

    torch.set_num_threads(1)
    arg = resolve_teacher(str(teacher_dir))
    teacher = evaluate_teacher(arg.spec, "digits", arg.schedule, IMAGE_METRICS, n=n, steps=arg.sampler_steps or 40,
                               method=arg.sampler_method or "heun", seed=0)
    test, _ = reference_dataset("digits")
    real = reference_dataset("digits", "train")[0].sample(n, generator=torch.Generator().manual_seed(0))
    floor = run_metrics(real, test, IMAGE_METRICS)
    for row in rows:
        if "run_dir" in row:
            row["student_run_eval"] = row["student"]  # the run's own (vs the train split, eval.samples)
            row["student"] = evaluate_student(row["run_dir"], IMAGE_METRICS, n=n, seed=0).metrics
            row["teacher"], row["exact"] = teacher.metrics, floor
    return {"teacher_steps": teacher.steps, "teacher_nfe": teacher.nfe, "n": n}


# -- speed ------------------------------------------------------------------------------------------

def median_ms(draw, noise: torch.Tensor, rounds: int) -> float:
    """Median wall time of ``draw(noise)`` in ms, after one warm-up call."""
    with torch.no_grad():
        draw(noise)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            draw(noise)
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def time_samplers(rows: list[dict], tasks: list[str], teacher_dir: Path, n: int, rounds: int) -> dict:
    """ms per 1000 samples (one batch of ``n``, one torch thread): every student, and each task's teacher
    sampler with the settings of its runs' evaluation (eval.teacher_steps/sampler, from eval.teacher_sigma_max)."""
    from bregzoo.teacher import sample_ode, sampling_schedule
    from bregzoo.train import load_student
    from bregzoo.train.build import build

    torch.set_num_threads(1)
    per_1000 = 1000 / n
    out = {}
    for task in tasks:
        cfg = cell_config(task, 1, 0, None, teacher_dir, Path(tempfile.gettempdir()))
        parts, e = build(cfg), cfg.eval
        sched = sampling_schedule(parts.schedule, parts.teacher, e.teacher_sigma_max)
        noise = torch.randn(n, *parts.dataset.data_shape, generator=torch.Generator().manual_seed(0))
        ms = median_ms(lambda x: sample_ode(parts.teacher.denoise, sched, x, e.teacher_steps, e.teacher_sampler),
                       noise, rounds)
        nfe = e.teacher_steps if e.teacher_sampler == "euler" else 2 * e.teacher_steps - 1
        out[task] = {"sampler": f"{e.teacher_sampler}-{e.teacher_steps}", "nfe": nfe, "ms_per_1000": ms * per_1000}
        print(f"{task:8s} teacher {e.teacher_sampler}-{e.teacher_steps}: {ms * per_1000:.2f} ms / 1000 samples",
              flush=True)
    for row in rows:
        if "run_dir" not in row:
            continue
        student = load_student(row["run_dir"])
        noise = student.noise(n, torch.Generator().manual_seed(0))
        row["ms_per_1000"] = median_ms(student.draw, noise, rounds) * per_1000
        row["nfe"] = student.steps
        print(f"{row['task']:8s} k={row['k']} seed {row['seed']}: {row['ms_per_1000']:.3f} ms / 1000 samples", flush=True)
    return out


# -- the report -------------------------------------------------------------------------------------

def _fmt(values: list[float], fmt: str) -> str:
    return _ms([v for v in values if v is not None], fmt)


def table_2d(rows: list[dict], task: str, ks: list[int], speed: dict) -> list[str]:
    ok = [r for r in rows if r["task"] == task and "student" in r]
    if not ok:
        return []
    teacher_ms = speed[task]["ms_per_1000"]
    out = [f"### {task}", "", "| sampler | NFE | MMD² (unbiased) | MMD²_b / exact floor | MMD²_b / teacher | modes (min, "
           "seeds with all) | precision | NLL | ms / 1000 samples | faster than the teacher | s/run |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    by_seed = list({r["seed"]: r for r in ok}.values())  # the floor and the teacher depend on the seed alone
    modes_k = max(r["exact"]["modes_covered"] for r in ok)
    for ref, label, nfe, ms in (("exact", "exact samples (floor)", "–", "–"),
                                ("teacher", f"teacher {speed[task]['sampler']} from s=80", str(speed[task]["nfe"]),
                                 f"{teacher_ms:.2f}")):
        get = lambda key: [r[ref][key] for r in by_seed]  # noqa: E731
        out.append(f"| {label} | {nfe} | {_fmt(get('mmd2'), '.5f')} | {ratio_of_means(by_seed, ref, 'exact')} | | "
                   f"{int(min(get('modes_covered')))} | {_fmt(get('precision'), '.3f')} | {_fmt(get('nll'), '.3f')} | "
                   f"{ms} | | |")
    for k in ks:
        kr = [r for r in ok if r["k"] == k]
        failed = sum(1 for r in rows if r["task"] == task and r["k"] == k and "error" in r)
        if not kr:
            if failed:
                out.append(f"| {k}-step student ({failed} failed) | {k} | | | | | | | | | |")
            continue
        get = lambda key: [r["student"][key] for r in kr]  # noqa: E731
        modes = get("modes_covered")
        ms = statistics.mean(r["ms_per_1000"] for r in kr)
        note = f" ({failed} failed)" if failed else ""
        out.append(f"| {k}-step student{note} | {k} | {_fmt(get('mmd2'), '.5f')} | {ratio_of_means(kr, 'student', 'exact')} | "
                   f"{ratio_of_means(kr, 'student', 'teacher')} | {int(min(modes))}, {sum(m == modes_k for m in modes)}/"
                   f"{len(kr)} | {_fmt(get('precision'), '.3f')} | {_fmt(get('nll'), '.3f')} | "
                   f"{_fmt([r['ms_per_1000'] for r in kr], '.3f')} | {teacher_ms / ms:.0f}x | "
                   f"{_fmt([r['seconds'] for r in kr], '.0f')} |")
    return out + [""]


def table_images(rows: list[dict], task: str, ks: list[int], speed: dict, info: dict) -> list[str]:
    ok = [r for r in rows if r["task"] == task and "student" in r]
    if not ok:
        return []
    teacher_ms = speed[task]["ms_per_1000"]
    cols = ("fid", "kid", "precision", "recall")
    out = [f"### {task} (digits-cnn metrics against the test split, {info['n']} samples each)", "",
           "| sampler | NFE | FID | KID | precision | recall | FID / teacher | ms / 1000 samples | "
           "faster than the teacher | s/run |", "|---|---|---|---|---|---|---|---|---|---|"]
    ref = ok[0]
    for side, label, nfe, ms in (("exact", "real train images (floor)", "–", "–"),
                                 ("teacher", f"teacher {speed[task]['sampler']}", str(speed[task]["nfe"]),
                                  f"{teacher_ms:.1f}")):
        out.append(f"| {label} | {nfe} | " + " | ".join(f"{ref[side][c]:.2f}" for c in cols) + f" | | {ms} | | |")
    for k in ks:
        kr = [r for r in ok if r["k"] == k]
        failed = sum(1 for r in rows if r["task"] == task and r["k"] == k and "error" in r)
        if not kr:
            if failed:
                out.append(f"| {k}-step student ({failed} failed) | {k} | | | | | | | | |")
            continue
        ms = statistics.mean(r["ms_per_1000"] for r in kr)
        fid = statistics.mean(r["student"]["fid"] for r in kr)
        note = f" ({failed} failed)" if failed else ""
        out.append(f"| {k}-step student{note} | {k} | " + " | ".join(_fmt([r["student"][c] for r in kr], ".2f") for c in cols)
                   + f" | {fid / ref['teacher']['fid']:.2f} | {_fmt([r['ms_per_1000'] for r in kr], '.2f')} | "
                   f"{teacher_ms / ms:.0f}x | {_fmt([r['seconds'] for r in kr], '.0f')} |")
    return out + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="2-D mixtures (gmm8, ...) and/or digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS), help="student steps k")
    parser.add_argument("--steps", type=int, default=None,
                        help="generator steps of every run [default: the task's recipe, 6000 on 2-D, 300 on digits]")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained in parallel (one process and thread each)")
    parser.add_argument("--digits-teacher", type=Path, default=Path("runs/digits/teacher"),
                        help="a `bregzoo teach` directory; trained there first when it holds none")
    parser.add_argument("--teach-steps", type=int, default=None, help="steps of that teacher [default: teach's 1500]")
    parser.add_argument("-n", type=int, default=1000, help="samples per model for the digits metrics")
    parser.add_argument("--time-n", type=int, default=1000, help="samples drawn per timing (reported per 1000)")
    parser.add_argument("--timing-rounds", type=int, default=7, help="timings per sampler; the median is reported")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/few_step.md"))
    args = parser.parse_args()
    if min(args.ks) < 1 or args.jobs < 1 or args.n < 2 or args.time_n < 1 or args.timing_rounds < 1:
        parser.error("--ks must be >= 1, --jobs, --time-n and --timing-rounds >= 1, -n >= 2")

    head = header("few_step: k-step students against the teacher sampler, quality against sampling speed",
                  ["benchmarks/few_step.py", *sys.argv[1:]])
    print("\n".join(head), flush=True)
    started = time.perf_counter()
    teacher_dir = args.digits_teacher.resolve()
    t_teach = ensure_teacher(teacher_dir, args.teach_steps) if IMAGE_TASKS & set(args.tasks) else 0.0
    cells = [(task, k, seed) for seed in args.seeds for task in args.tasks for k in args.ks]
    with tempfile.TemporaryDirectory(prefix="few-step-") as tmp:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_cell, task, k, seed, args.steps, teacher_dir, Path(tmp)) for task, k, seed in cells]
            rows = []
            for future in futures:
                row = future.result()
                rows.append(row)
                print(f"{row['task']:8s} k={row['k']} seed {row['seed']}: "
                      f"{row.get('error') or 'trained'} ({row['seconds']:.0f} s)", flush=True)
        t_train = time.perf_counter() - started - t_teach
        images = [t for t in args.tasks if t in IMAGE_TASKS]
        info = image_quality([r for r in rows if r["task"] in IMAGE_TASKS], teacher_dir, args.n) if images else {}
        speed = time_samplers(rows, args.tasks, teacher_dir, args.time_n, args.timing_rounds)
    for row in rows:
        row.pop("run_dir", None)

    lines = [*head, f"total {time.perf_counter() - started:.0f} s: teacher {t_teach:.0f} s, training {t_train:.0f} s "
             f"({args.jobs} runs at a time), then evaluation and timing alone",
             f"students: k in {args.ks}, seeds {args.seeds}, steps {args.steps or 'the task recipe'}; digits recipe "
             f"{DIGITS_RECIPE if images else '(not run)'}; timing: one batch of {args.time_n} samples on 1 torch "
             f"thread, median of {args.timing_rounds}", ""]
    for task in args.tasks:
        lines += table_images(rows, task, args.ks, speed, info) if task in IMAGE_TASKS else table_2d(rows, task, args.ks, speed)
    text = "\n".join(lines)
    print("\n" + text)
    io.write_text(args.out, text)
    io.write_json(args.out.with_suffix(".json"), {"header": head, "speed": speed, "image_eval": info, "cells": rows})


if __name__ == "__main__":
    main()
