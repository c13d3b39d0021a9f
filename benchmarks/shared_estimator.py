"""Ratio accuracy of the shared-trunk estimator (``train.ratio_net=shared``) against the separate one, on a
pair whose diffused log ratio is exact.

p is gmm8 (the teacher's data); the "student" q is a perturbed gmm8: its ring shrunk to radius 1.8 and turned
by 10 degrees, its modes 1.5x wider and one of them 3x heavier. Both are Gaussian mixtures, so
l_t(x) = log q_t(x) - log p_t(x) is exact at every noise level. Each variant trains, update for update as
``Distiller.train_step`` does, a fake denoiser by denoising score matching on q's samples (the default
backbone, schedule, batch and learning rates of ``bregzoo train``) and an estimator by BR_h (the default
``classifier``) on (p_t, q_t) at the same times. The shared head reads the fake denoiser's trunk at the fake
update's student x_t and at a reference x_t, from the trunk before the update, as the loop does. Reported:
mean |l_hat - l| over x_t drawn half from p_t and half from q_t, t from the training distribution, along
the training and per noise-level band (and the error of l = 0, the untrained estimator, as a yardstick).

Usage: ``python benchmarks/shared_estimator.py [--steps 3000] [--seeds 0 1 2]`` (about 1 min a variant and
seed on one core). Writes benchmarks/results/shared_estimator.md (command, revision, machine in the header).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import time

import torch
from einops import reduce

from bregzoo import io
from bregzoo.config import RunConfig
from bregzoo.networks import FeatureRatioHead, FeatureTap, diffuse, feature_shape
from bregzoo.train.build import build
from bregzoo_zoo.mixtures import Mixture, MixtureTeacher

VARIANTS = {  # name -> (train.ratio_net, hidden width of the shared head: 0 is the shipped linear head)
    "separate": ("separate", 0),
    "shared": ("shared", 0),
    "shared-detached": ("shared-detached", 0),
    "shared-detached-hidden64": ("shared-detached", 64),
    # probes for issue J (cheaper than "shared"): the trunk learns from the student features only, the reference
    # pass runs without grad; or the trunk learns from both, on a reference batch half the size
    "shared-refnograd": ("shared", 0),
    "shared-halfref": ("shared", 0),
}


def student_mixture(p):
    """gmm8 perturbed: radius 2 -> 1.8, turned 10 degrees, modes 1.5x wider, mode 0 3x heavier."""
    c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    w = torch.ones(len(p.weights), dtype=torch.float64)
    w[0] = 3.0
    return Mixture("gmm8-perturbed", 0.9 * p.means @ rot.T, 1.5 * p.stds, w)


def exact_log_ratio(p, q, x, t, sched) -> torch.Tensor:
    a, s = sched.alpha(t.double()), sched.sigma(t.double())
    return torch.logsumexp(q.diffused_log_prob(x, a, s)[0], 1) - torch.logsumexp(p.diffused_log_prob(x, a, s)[0], 1)


def run(variant: str, seed: int, steps: int, evals: list[int]) -> dict:
    ratio_net, hidden = VARIANTS[variant]
    trunk_grad = ratio_net == "shared"
    cfg = RunConfig().replace(**{"train.seed": seed, "train.ratio_net": ratio_net})
    parts = build(cfg)
    p, sched, est = parts.dataset, parts.schedule, parts.estimator
    q = student_mixture(p)
    fake = parts.fake
    tap = FeatureTap(fake) if ratio_net != "separate" else None
    ratio = FeatureRatioHead(feature_shape(fake, p.data_shape, sched.t_max), hidden) if tap else parts.ratio
    o, b, sd2 = cfg.optim, cfg.train.batch_size, parts.sigma_data ** 2
    f_opt = torch.optim.Adam(fake.parameters(), lr=o.lr_fake, betas=o.betas, foreach=True)
    e_opt = torch.optim.Adam(ratio.parameters(), lr=o.lr_estimator, betas=o.betas, foreach=True)
    g = torch.Generator().manual_seed(seed)
    # a fixed evaluation set: half from p_t, half from q_t
    te = sched.sample_t(8192, generator=torch.Generator().manual_seed(10_000 + seed))
    x0e = torch.cat([p.sample(4096, generator=g), q.sample(4096, generator=g)])
    xe = diffuse(x0e, te, sched, torch.randn(8192, 2, generator=g))
    le = exact_log_ratio(p, q, xe, te, sched).float()
    d_exact = MixtureTeacher(q, sched).denoise(xe[4096:], te[4096:])  # q's exact denoiser at q's x_t
    out = {"curve": {}, "zero": float(le.abs().mean())}

    def evaluate() -> torch.Tensor:
        with torch.no_grad():
            if tap is None:
                return ratio(xe, te)
            return ratio(tap.features(fake, xe, te), te)

    def step_opt(model, opt):
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(1, steps + 1):
        t = sched.sample_t(b, generator=g)
        x0 = q.sample(b, generator=g)
        xt = diffuse(x0, t, sched, torch.randn(b, 2, generator=g))
        x_ref = diffuse(p.sample(b, generator=g), t, sched, torch.randn(b, 2, generator=g))
        s2 = sched.s(t).double().square()
        w = ((s2 + sd2) / (s2 * sd2)).float()
        if tap is not None:
            with tap.capture():
                d = fake(xt, t)
            f_stu = tap.value if trunk_grad else tap.value.detach()
            t_ref = t
            if variant == "shared-halfref":
                x_ref, t_ref = x_ref[: b // 2], t[: b // 2]
            with torch.set_grad_enabled(trunk_grad and variant != "shared-refnograd"):
                f_ref = tap.features(fake, x_ref, t_ref)
        else:
            d = fake(xt, t)
        loss = (w * reduce((d - x0).square(), "b ... -> b", "mean")).mean()
        if tap is not None:
            out_both = ratio(torch.cat([f_ref, f_stu]), torch.cat([t_ref, t]))
            loss = loss + est.loss(out_both[: len(f_ref)], out_both[len(f_ref):])
        loss.backward()
        step_opt(fake, f_opt)
        if tap is None:
            o_ref, o_stu = ratio(torch.cat([x_ref, xt]), torch.cat([t, t])).chunk(2)
            est.loss(o_ref, o_stu).backward()
        step_opt(ratio, e_opt)
        if i in evals:
            err = (est.log_ratio(evaluate()) - le).abs()
            out["curve"][i] = float(err.mean())
            if i == steps:
                with torch.no_grad():  # the fake denoiser's own error: does the estimator's gradient hurt it?
                    out["fake_mse"] = float((fake(xe[4096:], te[4096:]) - d_exact).square().mean())
                s = sched.s(te)
                bands = [(0, 0.1), (0.1, 0.5), (0.5, 1.5), (1.5, math.inf)]
                out["bands"] = {f"s in [{lo:g}, {hi:g})": float(err[(s >= lo) & (s < hi)].mean()) for lo, hi in bands}
                out["bands_zero"] = {f"s in [{lo:g}, {hi:g})": float(le.abs()[(s >= lo) & (s < hi)].mean())
                                     for lo, hi in bands}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default="benchmarks/results/shared_estimator.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    evals = sorted({args.steps // 6, args.steps // 3, args.steps * 2 // 3, args.steps})
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = ["# Shared-trunk vs separate ratio estimator: mean |log r error| on gmm8 vs a perturbed gmm8",
             f"# machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, git {rev}",
             f"# command: python benchmarks/shared_estimator.py --steps {args.steps} --seeds "
             f"{' '.join(map(str, args.seeds))} --variants {' '.join(args.variants)}", ""]
    started, res = time.perf_counter(), {}
    for v in args.variants:
        res[v] = [run(v, s, args.steps, evals) for s in args.seeds]
        print(v, [r["curve"] for r in res[v]], flush=True)
    zero = statistics.mean(r["zero"] for r in res[args.variants[0]])
    lines += [f"mean |l| of the exact log ratio (the error of l = 0): {zero:.4f}", "",
              "| variant | " + " | ".join(f"step {e}" for e in evals) + " | per seed at the end | fake denoiser MSE |",
              "|---|" + "---|" * (len(evals) + 2)]
    for v, rs in res.items():
        cells = [f"{statistics.mean(r['curve'][e] for r in rs):.4f}" for e in evals]
        lines.append(f"| {v} | " + " | ".join(cells) + " | " + ", ".join(f"{r['curve'][args.steps]:.4f}" for r in rs)
                     + f" | {statistics.mean(r['fake_mse'] for r in rs):.5f} |")
    lines += ["", "At the end, by noise level s (mean over seeds; l = 0 in the last row):", "",
              "| variant | " + " | ".join(res[args.variants[0]][0]["bands"]) + " |",
              "|---|" + "---|" * len(res[args.variants[0]][0]["bands"])]
    for v, rs in res.items():
        lines.append(f"| {v} | " + " | ".join(f"{statistics.mean(r['bands'][k] for r in rs):.4f}" for k in rs[0]["bands"]) + " |")
    rs = res[args.variants[0]]
    lines.append("| l = 0 | " + " | ".join(f"{statistics.mean(r['bands_zero'][k] for r in rs):.4f}" for k in rs[0]["bands"]) + " |")
    lines.append(f"\n# total {time.perf_counter() - started:.0f} s")
    text = "\n".join(lines) + "\n"
    print(text)
    io.write_text(args.out, text)


if __name__ == "__main__":
    main()
