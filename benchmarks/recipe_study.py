"""Side-by-side recipe study on the 2-D tasks: named config variants, same seeds, same evaluation.

Each variant is a list of config overrides applied to the current ``bregzoo train`` defaults; the
first variant is the reference the others are read against. Every cell is one ``bregzoo.train``
run; its student is evaluated against the task's exact samples (the metric's noise floor, read as
a ratio of the biased MMD² ``mmd2_b``) and against the teacher's 40-step Heun sampler. Curves of
the metrics against training steps are kept in the JSON (one point every ``train.eval_every``).

Usage:
    python benchmarks/recipe_study.py --name lsif-weighting --tasks gmm8 --seeds 0 1 2 \\
        --variant "default divergence=lsif" \\
        --variant "batch divergence=lsif weighting.normalize=batch"

Writes benchmarks/results/study/<name>.md and .json (the command, revision and machine in the header).
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
from bregzoo.registry import _parse_value
from bregzoo.train import train

METRICS = ("mode-recall", "mmd", "precision")
FINAL_METRICS = ("mode-recall", "mmd", "precision", "nll")


def parse_variant(text: str) -> tuple[str, dict]:
    """'name key=value key=value' -> (name, overrides); values are parsed as on the CLI's --set."""
    name, *items = shlex.split(text)
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        v = _parse_value(value)
        overrides[key] = list(v) if isinstance(v, tuple) else v
    return name, overrides


def cell_config(task: str, seed: int, overrides: dict, work: Path, eval_every: int) -> RunConfig:
    base = RunConfig().replace(task=task, **{"train.seed": seed, "train.checkpoint_every": 10**9,
                                             "train.eval_every": eval_every, "eval.metrics": list(METRICS),
                                             "eval.final_metrics": list(FINAL_METRICS)})
    return base.replace(**overrides).replace(out=str(work))


def run_cell(variant: str, overrides: dict, task: str, seed: int, work: Path, eval_every: int) -> dict:
    torch.set_num_threads(1)
    cfg = cell_config(task, seed, overrides, work / f"{variant}-{task}-{seed}", eval_every)
    row = {"variant": variant, "task": task, "seed": seed, "overrides": overrides}
    started = time.perf_counter()
    try:
        result = train(cfg, check=False)
    except Exception as exc:  # a diverging recipe is a result, not a crash of the study
        return {**row, "error": f"{type(exc).__name__}: {exc}"[:400], "seconds": time.perf_counter() - started}
    curve = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [{k: v for k, v in r.items() if k != "split"} for r in curve if r.get("split") in ("student", "final-student")]
    return {**row, "seconds": result.seconds, "steps": result.steps, "student": result.student,
            "teacher": result.teacher, "exact": result.exact, "curve": curve}


def run_cells(cells: list[tuple[str, dict, str, int]], jobs: int, eval_every: int) -> list[dict]:
    """Train every (variant, overrides, task, seed) cell, ``jobs`` at a time, printing each as it ends."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="study-") as tmp, \
            ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_cell, v, o, task, seed, Path(tmp), eval_every) for v, o, task, seed in cells]
        for future in futures:
            row = future.result()
            rows.append(row)
            s = row.get("student", {})
            brief = row.get("error") or (f"mmd2 {s['mmd2']:.5f}  floor x{ratio(row, 'exact'):.2f}  "
                                         f"modes {s['modes_covered']}  prec {s['precision']:.3f}")
            print(f"{row['task']:15s} {row['variant']:22s} seed {row['seed']}: {brief}  ({row['seconds']:.0f} s)",
                  flush=True)
    return rows


def ratio(row: dict, ref: str) -> float:
    """The student's biased MMD² over the reference's (exact samples or the teacher sampler)."""
    return row["student"]["mmd2_b"] / row[ref]["mmd2_b"]


def ratio_of_means(rows: list[dict], side: str, ref: str) -> str:
    """mean over seeds of ``side``'s biased MMD² over the mean of ``ref``'s: one seed's floor is itself
    noisy (sd about half its mean at n = 2,000), so per-seed ratios scatter far more than this."""
    if not rows:
        return "–"
    return format(statistics.mean(r[side]["mmd2_b"] for r in rows) / statistics.mean(r[ref]["mmd2_b"] for r in rows),
                  ".2f")


def _ms(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def table(rows: list[dict], tasks: list[str], variants: list[str]) -> str:
    """Markdown: per task, the exact floor, the teacher sampler and every variant (mean ± sd over seeds)."""
    out = ["| task | sampler | MMD² (unbiased) | MMD²_b / exact floor | MMD²_b / teacher | modes (min, seeds with all) | "
           "precision | NLL | s/run |", "|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        ok = [r for r in rows if r["task"] == task and "student" in r]
        if not ok:
            continue
        by_seed = {r["seed"]: r for r in ok}.values()  # floor and teacher depend on the seed alone
        for ref, label in (("exact", "exact samples (floor)"), ("teacher", "teacher Heun-40 from s=80")):
            get = lambda k: [r[ref][k] for r in by_seed]  # noqa: E731
            out.append(f"| {task} | {label} | {_ms(get('mmd2'), '.5f')} | {ratio_of_means(list(by_seed), ref, 'exact')} | | "
                       f"{int(min(get('modes_covered')))} | {_ms(get('precision'), '.3f')} | {_ms(get('nll'), '.3f')} | |")
        k = max(r["exact"]["modes_covered"] for r in ok)  # the task's mode count, as exact samples cover it
        for v in variants:
            vr = [r for r in ok if r["variant"] == v]
            failed = sum(1 for r in rows if r["task"] == task and r["variant"] == v and "error" in r)
            if not vr and not failed:
                continue
            get = lambda key: [r["student"][key] for r in vr]  # noqa: E731
            modes = get("modes_covered")
            full = sum(m == k for m in modes)
            note = f" ({failed} failed)" if failed else ""
            out.append(
                f"| {task} | {v}{note} | {_ms(get('mmd2'), '.5f')} | {ratio_of_means(vr, 'student', 'exact')} | "
                f"{ratio_of_means(vr, 'student', 'teacher')} | {int(min(modes)) if modes else '–'}, {full}/{len(vr)} | "
                f"{_ms(get('precision'), '.3f')} | {_ms(get('nll'), '.3f')} | {_ms([r['seconds'] for r in vr], '.0f')} |")
    return "\n".join(out)


def header(title: str, argv: list[str]) -> list[str]:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return [f"# {title}", f"command: python {shlex.join(argv)}",
            f"git {rev or '?'}{' (with uncommitted changes)' if dirty else ''}, {platform.machine()} "
            f"{os.cpu_count()} cores, torch {torch.__version__}, load avg {os.getloadavg()[0]:.2f} at start, "
            f"{time.strftime('%Y-%m-%d %H:%M')}",
            f"base recipe (bregzoo train defaults): {json.dumps(RunConfig().to_dict())}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="results go to benchmarks/results/study/NAME.md/.json")
    parser.add_argument("--variant", action="append", required=True, help="'NAME key=value ...' (repeatable)")
    parser.add_argument("--tasks", nargs="+", default=["gmm8"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=500)
    args = parser.parse_args()

    variants = [parse_variant(v) for v in args.variant]
    head = header(f"recipe study: {args.name}", ["benchmarks/recipe_study.py", *sys.argv[1:]])
    print("\n".join(head), flush=True)
    started = time.perf_counter()
    cells = [(v, o, task, seed) for seed in args.seeds for task in args.tasks for v, o in variants]
    rows = run_cells(cells, args.jobs, args.eval_every)
    lines = [*head, f"total {time.perf_counter() - started:.0f} s, {args.jobs} cells at a time", "",
             "variants: " + "; ".join(f"`{v}`: {json.dumps(o)}" for v, o in variants), "",
             table(rows, args.tasks, [v for v, _ in variants]), ""]
    text = "\n".join(lines)
    print("\n" + text)
    out = Path("benchmarks/results/study") / args.name
    io.write_text(out.with_suffix(".md"), text)
    io.write_json(out.with_suffix(".json"), rows)


if __name__ == "__main__":
    main()
