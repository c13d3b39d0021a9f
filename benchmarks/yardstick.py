"""How honest is the 2-D yardstick? The teacher's Heun sampler against the task's exact samples.

For each task, over several seeds: the metrics of exact samples (two independent exact sets: the
noise floor), and of the exact teacher's 40-step Heun sampler started at noise level s_max = 3 (the
top of the 2-D training schedule, where earlier versions started it) and at s_max = 80 (EDM's
sigma_max, the default now). Mode shares are compared with the true weights by total variation.

Usage: ``python benchmarks/yardstick.py [--seeds 0 1 2 3 4] [--n 2000]``
Writes benchmarks/results/yardstick.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from bregzoo import io
from bregzoo.api import create_dataset, create_metric, create_teacher
from bregzoo.config import RunConfig
from bregzoo.train.build import build_schedule
from bregzoo.teacher import sample_ode, sampling_schedule

sys.path.insert(0, str(Path(__file__).parent))
from recipe_study import header  # noqa: E402

TASKS = ("gmm8", "gmm25", "gmm-unbalanced")
METRICS = ("mmd", "mode-recall", "precision", "nll")


def mode_tv(x: torch.Tensor, ds) -> float:
    """Total variation between the samples' mode shares (nearest mean) and the true weights."""
    nearest = torch.cdist(x.double(), ds.means).argmin(1)
    share = torch.bincount(nearest, minlength=len(ds.weights)).double() / len(x)
    return float(0.5 * (share - ds.weights).abs().sum())


def evaluate(x: torch.Tensor, ds) -> dict[str, float]:
    out = {"tv": mode_tv(x, ds)}
    for m in METRICS:
        out.update(create_metric(m)(x, ds))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/yardstick.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    schedule = build_schedule(RunConfig().schedule)
    lines = [*header("yardstick: the teacher sampler against exact samples", ["benchmarks/yardstick.py", *sys.argv[1:]]),
             f"n = {args.n} samples per set, seeds {args.seeds}; mean ± sd over seeds. MMD²_b / floor is the mean biased "
             "MMD² over the mean of independent exact sets (seeds 1000+).", "",
             "| task | sampler | MMD² (unbiased) | MMD²_b / floor | mode-share TV | modes | precision | NLL |",
             "|---|---|---|---|---|---|---|---|"]
    for task in TASKS:
        ds = create_dataset(task)
        teacher = create_teacher("analytic-gmm", dataset=ds, schedule=schedule)
        rows: dict[str, list[dict]] = {"exact samples": [], "Heun-40 from s=3": [], "Heun-40 from s=80": []}
        for seed in args.seeds:
            g = torch.Generator().manual_seed(1000 + seed)
            floor = evaluate(ds.sample(args.n, generator=g), ds)
            rows["exact samples"].append(floor)
            noise = torch.randn(args.n, *ds.data_shape, generator=g)
            for label, s_max in (("Heun-40 from s=3", None), ("Heun-40 from s=80", 80.0)):
                x = sample_ode(teacher.denoise, sampling_schedule(schedule, teacher, s_max), noise, 40, "heun")
                m = evaluate(x, ds)
                rows[label].append(m)
        for label, ms in rows.items():
            def f(k: str, fmt: str) -> str:
                v = [m[k] for m in ms]
                return f"{format(statistics.mean(v), fmt)} ± {format(statistics.stdev(v), fmt)}"
            ratio = statistics.mean(m["mmd2_b"] for m in ms) / statistics.mean(m["mmd2_b"] for m in rows["exact samples"])
            lines.append(f"| {task} | {label} | {f('mmd2', '.5f')} | {ratio:.2f} | {f('tv', '.3f')} | "
                         f"{min(m['modes_covered'] for m in ms)}/{len(ds.weights)} | {f('precision', '.3f')} | "
                         f"{f('nll', '.3f')} |")
        print("\n".join(lines[-3:]), flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    io.write_text(args.out, text)


if __name__ == "__main__":
    main()
