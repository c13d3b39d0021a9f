"""Student vs teacher sampler on the 2-D tasks, for reverse-KL (DMD) and other Bregman divergences.

Every cell is one ``bregzoo.train.train`` run with the default recipe of ``bregzoo train`` and the
same budget; only the divergence, task and seed change. The teacher row is the exact teacher's
Heun sampler (40 steps) that each run evaluates with the same metrics. MMD² is unbiased (it can
dip below 0); mode recall counts modes that get at least a fifth of their expected samples.

Usage: ``python benchmarks/distill_2d.py [--steps 1000] [--seeds 0 1 2] [--jobs 2] [--out benchmarks/results/distill_2d.md]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from bregzoo import io
from bregzoo.config import RunConfig
from bregzoo.train import train

TASKS = ("gmm8", "gmm25", "gmm-unbalanced")
DIVERGENCES = ("reverse-kl", "kl", "hellinger", "lsif")
METRICS = ("mode-recall", "mmd", "precision")


def run_cell(task: str, divergence: str, seed: int, steps: int, work: Path) -> dict:
    torch.set_num_threads(1)
    cfg = RunConfig().replace(task=task, divergence=divergence, out=str(work / f"{task}-{divergence}-{seed}"), **{
        "train.steps": steps, "train.seed": seed, "train.eval_every": 10**9, "train.checkpoint_every": 10**9,
        "eval.metrics": list(METRICS), "eval.final_metrics": list(METRICS)})
    started = time.perf_counter()
    try:
        result = train(cfg, check=False)
    except Exception as exc:  # a diverging divergence is a result, not a crash of the benchmark
        return {"task": task, "divergence": divergence, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}
    return {"task": task, "divergence": divergence, "seed": seed, "seconds": time.perf_counter() - started,
            "student": result.student, "teacher": result.teacher}


def _ms(values: list[float], fmt: str) -> str:
    if not values:
        return "failed"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def table(rows: list[dict], seeds: list[int]) -> str:
    lines = ["| task | sampler | MMD² (mean ± sd) | mode recall | precision | s/run |",
             "|---|---|---|---|---|---|"]
    for task in TASKS:
        by_seed = {r["seed"]: r["teacher"] for r in rows if r["task"] == task and "teacher" in r}
        if by_seed:  # the teacher's sampler depends on the seed only, not on the divergence
            get = lambda key: [t[key] for t in by_seed.values()]  # noqa: E731
            lines.append(f"| {task} | teacher Heun-40 | {_ms(get('mmd2'), '.5f')} | {_ms(get('mode_recall'), '.3f')} | "
                         f"{_ms(get('precision'), '.3f')} | |")
        for div in DIVERGENCES:
            ok = [r for r in rows if r["task"] == task and r["divergence"] == div and "student" in r]
            failed = [r for r in rows if r["task"] == task and r["divergence"] == div and "error" in r]
            if not ok and not failed:
                continue
            get = lambda key: [r["student"][key] for r in ok]  # noqa: E731
            note = f" ({len(failed)} failed)" if failed else ""
            lines.append(f"| {task} | {div} (1 step){note} | {_ms(get('mmd2'), '.5f')} | {_ms(get('mode_recall'), '.3f')} | "
                         f"{_ms(get('precision'), '.3f')} | {_ms([r['seconds'] for r in ok], '.0f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2, help="cells trained in parallel (one process each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--divergences", nargs="+", default=list(DIVERGENCES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/distill_2d.md"))
    args = parser.parse_args()

    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = [
        f"# distill_2d: one-step students vs the teacher sampler ({args.steps} steps, seeds {args.seeds})",
        f"command: python {shlex.join(['benchmarks/distill_2d.py'] + sys.argv[1:])}",
        f"git {rev or '?'}, {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
        f"load avg {os.getloadavg()[0]:.2f} at start, {time.strftime('%Y-%m-%d %H:%M')}",
        f"recipe: bregzoo train defaults except steps/seed/divergence/task: {json.dumps(RunConfig().to_dict())}",
    ]
    print("\n".join(header), flush=True)
    rows, started = [], time.perf_counter()
    cells = [(task, div, seed) for task in args.tasks for div in args.divergences for seed in args.seeds]
    with tempfile.TemporaryDirectory(prefix="distill2d-") as tmp, \
            ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_cell, task, div, seed, args.steps, Path(tmp)) for task, div, seed in cells]
        for future in futures:
            row = future.result()
            rows.append(row)
            brief = row.get("error") or {k: round(v, 4) for k, v in row["student"].items()}
            print(f"{row['task']:15s} {row['divergence']:11s} seed {row['seed']}: {brief}", flush=True)
    text = "\n".join(header) + f"\ntotal {time.perf_counter() - started:.0f} s\n\n" + table(rows, args.seeds) + "\n"
    print("\n" + text)
    io.write_text(args.out, text)
    io.write_json(args.out.with_suffix(".json"), rows)


if __name__ == "__main__":
    main()
