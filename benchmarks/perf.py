"""Performance ratios of bregzoo, each measured side by side in one run (interleaved rounds, median step time).

1. Di-Bregman step (lsif weight, estimator update included) vs a plain reverse-KL/DMD step (no estimator),
   same networks and batch: what the density-ratio estimator costs.
2. bregzoo's loop step (``Distiller.train_step`` on Accelerate, with reverse-kl and with lsif) vs a bare
   PyTorch loop doing the same work (same networks, noise, optimisers, EMA, clipping): the framework overhead.
3. Sampling throughput: the one-step student vs the teacher's Heun sampler at 40 steps (the analytic
   mixture teacher, and a network teacher with the student's own backbone).
4. Peak memory of one training step (CPU: peak RSS in a fresh subprocess; CUDA: max_memory_allocated).
5. Step time vs batch size (4 sizes) and backbone width (3 sizes).

Usage: ``python benchmarks/perf.py [--steps 20] [--rounds 3] [--device cpu|cuda]`` (about 2-4 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from einops import reduce

from bregzoo.config import RunConfig
from bregzoo.api import create_backbone
from bregzoo.networks import Denoiser, FeatureRatioHead, FeatureTap, diffuse, feature_shape
from bregzoo.teacher import per_sample, sample_ode
from bregzoo.train.build import build, generate
from bregzoo.train.loop import Distiller, NonFiniteWatch, draw_step_noise

TASK = "gmm8"


FAKE_UPDATES = 2  # set by --fake-updates


def config(divergence: str = "reverse-kl", batch: int = 256, width: int = 128, ratio_net: str = "separate",
           ref_fraction: float = 1.0) -> RunConfig:
    return RunConfig(task=TASK, divergence=divergence, backbone=f"mlp:width={width}").replace(
        **{"train.batch_size": batch, "train.seed": 0, "train.fake_updates": FAKE_UPDATES, "train.ratio_net": ratio_net,
           "train.ref_fraction": ref_fraction})


def accelerator(device: str):
    from accelerate import Accelerator

    return Accelerator(cpu=device == "cpu")


def loop_stepper(cfg: RunConfig, device: str):
    """bregzoo's own step: Distiller.train_step, with the loop's per-step noise draw and non-finite watch."""
    parts = build(cfg)
    d = Distiller(cfg, parts, accelerator(device))
    watch = NonFiniteWatch()

    def step() -> None:
        watch.observe(d.train_step(draw_step_noise(d.rng, parts, cfg, 1, 0)), d.step)
    return step


def bare_stepper(cfg: RunConfig, device: str, estimator: bool):
    """The same algorithm in plain PyTorch: no Accelerate, no logging, no weight-normaliser object.

    ``estimator=False`` is plain DMD (reverse-KL, omega = 1): generator + k fake-denoiser updates only. With
    ``train.ratio_net=shared`` the estimator is a head on the fake denoiser's trunk features: l at the
    generator's x_t comes with D_fake from one trunk pass, and the head trains on the last fake update's
    student features plus a trunk pass (no decoder) at reference x_t, its loss reaching the trunk through both
    (``shared-detached``: features detached, no backward through the trunk).
    """
    parts = build(cfg)
    dev = torch.device(device)
    gen, fake, ratio = parts.generator.to(dev), parts.fake.to(dev), parts.ratio.to(dev)
    teacher, sched, div, est = parts.teacher.to(dev), parts.schedule, parts.divergence, parts.estimator
    o = cfg.optim
    opts = [torch.optim.Adam(m.parameters(), lr=lr, betas=o.betas, foreach=True) for m, lr in
            ((gen, o.lr_generator), (fake, o.lr_fake), (ratio, o.lr_estimator))]
    ema = copy.deepcopy(gen).requires_grad_(False)
    rng = torch.Generator().manual_seed(0)
    sd2 = parts.sigma_data ** 2
    tap = FeatureTap(fake) if estimator and cfg.train.ratio_net != "separate" else None
    trunk = cfg.train.ratio_net == "shared"  # the estimator's loss trains the trunk too
    m = max(1, round(cfg.train.ref_fraction * cfg.train.batch_size))  # reference samples per estimator update

    def update(model, opt, loss=None) -> None:
        if loss is not None:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step() -> None:
        noise = draw_step_noise(rng, parts, cfg, 1, 0)
        nz = {k: v[0].to(dev) for k, v in noise["gen"].items()}
        x0 = generate(gen, sched, nz["eps"][:, 0])  # (B, k=1, ...) -> the one-step latent
        with torch.no_grad():
            xt = diffuse(x0, nz["t"], sched, nz["z"])
            d_real = teacher.denoise(xt, nz["t"])
            if tap is not None:
                with tap.capture():
                    d_fake = fake(xt, nz["t"])
                omega = div.log_weight(ratio(tap.value, nz["t"])).exp()
            else:
                d_fake = fake(xt, nz["t"])
                omega = div.log_weight(ratio(xt, nz["t"])).exp() if estimator else torch.ones(len(x0), device=dev)
        norm = reduce((x0.detach() - d_real).abs(), "b ... -> b", "mean").clamp_min(1e-12)
        g = per_sample(omega / norm, x0) * (d_fake - d_real)
        update(gen, opts[0], 0.5 * reduce((x0 - (x0 - g).detach()).square(), "b ... -> b", "mean").mean())
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(gen.parameters()), 0.01)
        for j, nzj in enumerate(noise["fake"]):
            nzj = {k: v[0].to(dev) for k, v in nzj.items()}
            with torch.no_grad():
                x0 = generate(gen, sched, nzj["eps"][:, 0])
            s2 = sched.s(nzj["t"]).square()
            if tap is not None and j == len(noise["fake"]) - 1:
                nze = {k: v[0][:m].to(dev) for k, v in noise["est"].items()}
                t, t_ref = nzj["t"], nzj["t"][:m]
                xt, x_ref = diffuse(x0, t, sched, nzj["z"]), diffuse(nze["x_ref"], t_ref, sched, nze["z_ref"])
                if trunk:  # vector features: one pass over both batches, as the loop does
                    with tap.capture():
                        d = fake(torch.cat([xt, x_ref]), torch.cat([t, t_ref]))[: len(xt)]
                    f_stu, f_ref = tap.value[: len(xt)], tap.value[len(xt):]
                else:
                    with tap.capture():
                        d = fake(xt, t)
                    f_stu = tap.value.detach()
                    with torch.no_grad():
                        f_ref = tap.features(fake, x_ref, t_ref)
                per = reduce((d - x0).square(), "b ... -> b", "mean")
                out = ratio(torch.cat([f_ref, f_stu]), torch.cat([t_ref, t]))
                (((s2 + sd2) / (s2 * sd2) * per).mean() + est.loss(out[:m], out[m:])).backward()
                update(fake, opts[1])
                update(ratio, opts[2])
                continue
            per = reduce((fake(diffuse(x0, nzj["t"], sched, nzj["z"]), nzj["t"]) - x0).square(), "b ... -> b", "mean")
            update(fake, opts[1], ((s2 + sd2) / (s2 * sd2) * per).mean())
        if estimator and tap is None:
            nze = {k: v[0].to(dev) for k, v in noise["est"].items()}
            with torch.no_grad():
                x0 = generate(gen, sched, nze["eps"][:, 0])
            t = nze["t"]
            x_stu, x_ref = diffuse(x0, t, sched, nze["z"]), diffuse(nze["x_ref"][:m], t[:m], sched, nze["z_ref"][:m])
            out = ratio(torch.cat([x_ref, x_stu]), torch.cat([t[:m], t]))
            update(ratio, opts[2], est.loss(out[:m], out[m:]))
    return step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(f, device: str, clock=time.perf_counter) -> float:
    """Seconds of one call of ``f`` on ``clock``, with the device synchronised on both sides."""
    sync(device)
    start = clock()
    f()
    sync(device)
    return clock() - start


def race(steppers: dict, steps: int, rounds: int, device: str, cpu: dict | None = None) -> dict[str, float]:
    """Median seconds per step of each stepper over ``steps * rounds`` steps each, interleaved step by step
    (one step of each in turn, the order rotating) so that load drifts hit all alike.

    ``cpu``: a dict that receives each stepper's median CPU seconds per step (this process's CPU time). On a
    shared machine wall-clock time counts the time other jobs hold the cores; CPU time does not, so its
    ratios are the steadier ones there (on a GPU the wall-clock ratios are the ones that matter).
    """
    times: dict[str, list[float]] = {k: [] for k in steppers}
    cpus: dict[str, list[float]] = {k: [] for k in steppers}
    for f in steppers.values():  # warm-up
        for _ in range(3):
            f()
    names = list(steppers)
    for i in range(steps * rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            sync(device)
            t, c = time.perf_counter(), time.process_time()
            steppers[name]()
            sync(device)
            times[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
    if cpu is not None:
        cpu.update({k: statistics.median(v) for k, v in cpus.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def shared_breakdown(device: str, image: bool = False, reps: int = 60) -> dict[str, float]:
    """Median CPU ms of the pieces a shared-trunk estimator adds to a DMD step: the perf networks at batch 256,
    or (``image``) the compact UNet (channels 64, mults 1x2x2, 2 blocks, attention at 16) on 3x32x32 at batch 16."""
    dev = torch.device(device)
    if image:
        sched = build(config()).schedule
        fake = Denoiser(create_backbone("unet:channels=64,mults=1x2x2,blocks=2,attn=16", data_shape=(3, 32, 32)),
                        sched, 0.5).to(dev)
        head = FeatureRatioHead(feature_shape(fake, (3, 32, 32), sched.t_max)).to(dev)
        x, t = torch.randn(16, 3, 32, 32, device=dev), sched.sample_t(16).to(dev)
        reps = max(5, reps // 10)
    else:
        parts = build(config("lsif", ratio_net="shared"))
        fake, head = parts.fake.to(dev), parts.ratio.to(dev)
        x, t = torch.randn(256, *parts.dataset.data_shape, device=dev), parts.schedule.sample_t(256).to(dev)
    tap = FeatureTap(fake)
    opt = torch.optim.Adam(head.parameters(), foreach=True)

    def trunk_fwd() -> None:
        with torch.no_grad():
            tap.features(fake, x, t)

    def trunk_fwd_bwd() -> None:
        tap.features(fake, x, t).square().mean().backward()

    def fake_fwd_bwd() -> None:
        fake(x, t).square().mean().backward()

    feats = tap.features(fake, x, t).detach()
    f2, t2 = torch.cat([feats, feats]).requires_grad_(True), torch.cat([t, t])

    def head_fwd_bwd() -> None:
        head(f2, t2).square().mean().backward()

    def head_step() -> None:
        torch.nn.utils.clip_grad_norm_(head.parameters(), 10.0, foreach=True)
        opt.step()

    head_fwd_bwd()
    jobs = {"fake denoiser fwd+bwd (the DSM update, for scale)": fake_fwd_bwd,
            "trunk fwd at reference x_t, no grad (shared-detached)": trunk_fwd,
            "trunk fwd+bwd at reference x_t (shared)": trunk_fwd_bwd,
            "head fwd+bwd on 2B features": head_fwd_bwd, "head clip + Adam step": head_step}
    out = {}
    for name, f in jobs.items():
        for _ in range(2 if image else 5):
            f()
        ts = [timed(f, device, time.process_time) for _ in range(reps)]
        fake.zero_grad(set_to_none=True)
        out[name] = 1e3 * statistics.median(ts)
    return out


@torch.no_grad()
def sampling(device: str, n: int = 4096, rounds: int = 5) -> dict[str, float]:
    """Samples per second: one-step student vs the Heun sampler at 40 steps (analytic and network teachers)."""
    cfg = config()
    parts = build(cfg)
    dev = torch.device(device)
    gen, sched = parts.generator.to(dev).eval(), parts.schedule
    teacher, net_teacher = parts.teacher.to(dev), parts.fake.to(dev).eval()  # fake: same backbone as the student
    eps = torch.randn(n, *parts.dataset.data_shape, device=dev)
    jobs = {"student_1step": lambda: generate(gen, sched, eps),
            "teacher_analytic_heun40": lambda: sample_ode(teacher.denoise, sched, eps, 40, "heun"),
            "teacher_network_heun40": lambda: sample_ode(net_teacher, sched, eps, 40, "heun")}
    best = {}
    for name, f in jobs.items():
        f()
        ts = [timed(f, device) for _ in range(rounds)]
        best[name] = n / statistics.median(ts)
    return best


def memory_child(batch: int, device: str) -> dict[str, float]:
    """Run in a fresh process: memory of one training step at ``batch`` (Distiller, lsif)."""
    torch.set_num_threads(1)
    step = loop_stepper(config("lsif", batch), device)
    if device == "cuda":
        step()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20, "step_extra_mib": (torch.cuda.max_memory_allocated() - base) / 2**20}
    # Measured from the built networks to the peak over 3 steps: glibc keeps freed blocks, so after a
    # first step RSS no longer moves and a per-step delta would read ~0.
    try:  # reset the kernel's peak-RSS mark (VmHWM) so the peak is this step's, not the imports'
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before = _status_kib("VmRSS")
    for _ in range(3):
        step()
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_built_mib": before / 1024, "peak_rss_training_mib": peak / 1024,
            "training_extra_mib": max(peak - before, 0) / 1024, "peak_mark_reset": float(reset)}


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def memory(batches: list[int], device: str) -> dict[int, dict[str, float]]:
    out = {}
    for b in batches:
        res = subprocess.run([sys.executable, __file__, "--_memory", str(b), "--device", device],
                             capture_output=True, text=True, check=True)
        out[b] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def profile_overhead(dev: str, steps: int = 60, top: int = 12) -> list[tuple[str, float, float, float]]:
    """Where the bregzoo loop's step (reverse-kl) spends time that the bare loop does not: cProfile of both
    (``steps`` each, after a warm-up), functions ranked by the difference of their own time per step.
    Returns a total row, then (Python function, loop ms/step, bare ms/step, difference) rows; the profiler's own
    cost inflates small Python functions, so read them as a ranking, not as timings."""
    import cProfile
    import pstats

    steppers = {"loop": loop_stepper(config("reverse-kl"), dev), "bare": bare_stepper(config("reverse-kl"), dev, False)}
    own: dict[str, dict[str, float]] = {}
    for name, f in steppers.items():
        for _ in range(5):
            f()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(steps):
            f()
        prof.disable()
        own[name] = {}
        for (path, line, func), row in pstats.Stats(prof).stats.items():
            key = f"{os.path.basename(path)}:{line}({func})" if line else func
            own[name][key] = own[name].get(key, 0.0) + 1e3 * row[2] / steps
    rows = [(k, own["loop"].get(k, 0.0), own["bare"].get(k, 0.0)) for k in set(own["loop"]) | set(own["bare"])]
    # Torch's kernels (built-ins and tensor methods) do the same work in both loops, so their differences
    # are noise; the Python functions are where a framework's overhead lives.
    rows = [(k, a, b, a - b) for k, a, b in rows if not k.startswith("<")]
    rows.sort(key=lambda r: -r[3])
    return [("total", sum(own["loop"].values()), sum(own["bare"].values()),
             sum(own["loop"].values()) - sum(own["bare"].values()))] + rows[:top]


def step_race(dev: str, steps: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds per step of every stepper, raced side by side in this process."""
    c: dict[str, float] = {}
    t = race({"dmd_bare": bare_stepper(config("reverse-kl"), dev, estimator=False),
              "dibregman_bare": bare_stepper(config("lsif"), dev, estimator=True),
              "dibregman_shared_bare": bare_stepper(config("lsif", ratio_net="shared"), dev, estimator=True),
              "loop_reverse_kl": loop_stepper(config("reverse-kl"), dev),
              "loop_dibregman": loop_stepper(config("lsif"), dev),
              "loop_dibregman_shared": loop_stepper(config("lsif", ratio_net="shared"), dev),
              "dibregman_detached_bare": bare_stepper(config("lsif", ratio_net="shared-detached"), dev, estimator=True),
              "loop_dibregman_detached": loop_stepper(config("lsif", ratio_net="shared-detached"), dev),
              "dibregman_half_bare": bare_stepper(config("lsif", ratio_net="shared", ref_fraction=0.5), dev, estimator=True),
              "loop_dibregman_half": loop_stepper(config("lsif", ratio_net="shared", ref_fraction=0.5), dev)},
             steps, rounds, dev, cpu=c)
    return {"wall": t, "cpu": c}


RATIOS = {"Di-Bregman step / plain DMD step, separate estimator (both bare PyTorch)": ("dibregman_bare", "dmd_bare"),
          "Di-Bregman step / plain DMD step, shared-trunk estimator (both bare)": ("dibregman_shared_bare", "dmd_bare"),
          "Di-Bregman step / plain DMD step, shared-trunk estimator (both bregzoo loop)":
              ("loop_dibregman_shared", "loop_reverse_kl"),
          "Di-Bregman step (bregzoo loop, shared) / plain DMD step (bare)": ("loop_dibregman_shared", "dmd_bare"),
          "bregzoo loop / bare PyTorch, plain DMD (reverse-kl)": ("loop_reverse_kl", "dmd_bare"),
          "bregzoo loop / bare PyTorch, Di-Bregman (lsif), separate estimator": ("loop_dibregman", "dibregman_bare"),
          "bregzoo loop / bare PyTorch, Di-Bregman (lsif), shared-trunk estimator":
              ("loop_dibregman_shared", "dibregman_shared_bare"),
          "Di-Bregman step / plain DMD step, shared-detached estimator (both bare)": ("dibregman_detached_bare", "dmd_bare"),
          "Di-Bregman step / plain DMD step, shared-detached estimator (both bregzoo loop)":
              ("loop_dibregman_detached", "loop_reverse_kl"),
          "bregzoo loop / bare PyTorch, Di-Bregman (lsif), shared-detached estimator":
              ("loop_dibregman_detached", "dibregman_detached_bare"),
          "Di-Bregman step / plain DMD step, shared, ref_fraction 0.5 (both bare)": ("dibregman_half_bare", "dmd_bare"),
          "Di-Bregman step / plain DMD step, shared, ref_fraction 0.5 (both bregzoo loop)":
              ("loop_dibregman_half", "loop_reverse_kl"),
          "bregzoo loop / bare PyTorch, Di-Bregman (lsif), shared, ref_fraction 0.5":
              ("loop_dibregman_half", "dibregman_half_bare")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="steps per stepper per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the loop's default is 1)")
    ap.add_argument("--fake-updates", type=int, default=2, help="fake-denoiser updates per step (issue J's reference: 2)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="race the step times in this many fresh processes; report the median and the range")
    ap.add_argument("--profile", action="store_true", help="also profile the loop's overhead over bare PyTorch")
    ap.add_argument("--_memory", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--_race", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global FAKE_UPDATES
    FAKE_UPDATES = args.fake_updates
    if args._memory:
        print(json.dumps(memory_child(args._memory, args.device)))
        return
    torch.set_num_threads(args.threads)
    if args._race:
        print(json.dumps(step_race(args.device, args.steps, args.rounds)))
        return
    dev, started = args.device, time.perf_counter()
    import subprocess as sp

    rev = sp.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# bregzoo perf: task {TASK}, mlp backbone, batch 256, fake_updates {FAKE_UPDATES}, {args.threads} torch thread(s), "
          f"device {dev}")
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, python "
          f"{platform.python_version()}, git {rev}, load avg {os.getloadavg()[0]:.2f} at start")
    print(f"# command: python benchmarks/perf.py --steps {args.steps} --rounds {args.rounds} --device {dev} "
          f"--fake-updates {FAKE_UPDATES} --repeats {args.repeats}{' --profile' if args.profile else ''}\n")

    if args.repeats > 1:  # each race in a fresh process: a ratio moves by several % from process to process
        runs = []
        for _ in range(args.repeats):
            res = subprocess.run([sys.executable, __file__, "--_race", "--steps", str(args.steps), "--rounds",
                                  str(args.rounds), "--device", dev, "--threads", str(args.threads), "--fake-updates",
                                  str(FAKE_UPDATES)], capture_output=True, text=True, check=True)
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    else:
        runs = [step_race(dev, args.steps, args.rounds)]
    t = {k: statistics.median(r["wall"][k] for r in runs) for k in runs[0]["wall"]}
    c = {k: statistics.median(r["cpu"][k] for r in runs) for k in runs[0]["cpu"]}
    print("## step time (median ms/step, batch 256; wall clock, and this process's CPU time"
          + (f"; median of {len(runs)} fresh processes)" if len(runs) > 1 else ")"))
    for k, v in t.items():
        print(f"  {k:24s} {1e3 * v:8.2f} ms wall   {1e3 * c[k]:8.2f} ms cpu")
    print(f"## ratios{'':72s} wall    cpu" + ("    (cpu: each process's ratio, min-max)" if len(runs) > 1 else ""))
    for label, (a, b) in RATIOS.items():
        spread = [r["cpu"][a] / r["cpu"][b] for r in runs]
        mid = statistics.median(spread)
        extra = f"    {min(spread):.2f}-{max(spread):.2f}" if len(runs) > 1 else ""
        print(f"  {label:78s} {statistics.median(r['wall'][a] / r['wall'][b] for r in runs):.2f}x  {mid:.2f}x{extra}")
    if args.profile:
        print("\n## where the loop's reverse-kl step spends time that bare PyTorch does not (cProfile, 60 steps each;"
              "\n## ms/step of each Python function's own time, ranked by the difference; torch's kernels left out)")
        for k, a, b, d in profile_overhead(dev):
            print(f"  {k[:64]:64s} loop {a:7.3f}  bare {b:7.3f}  diff {d:+7.3f}")

    print("\n## where a shared-trunk estimator's time goes (median CPU ms; the perf MLP at batch 256)")
    for k, v in shared_breakdown(dev).items():
        print(f"  {k:58s} {v:7.2f}")
    print("## the same for an image UNet (unet:channels=64,mults=1x2x2,blocks=2,attn=16; 3x32x32, batch 16)")
    for k, v in shared_breakdown(dev, image=True).items():
        print(f"  {k.replace('2B', '2B=32'):58s} {v:7.1f}")

    s = sampling(dev)
    print("\n## sampling throughput (samples/s, 4096 at once)")
    for k, v in s.items():
        print(f"  {k:26s} {v:12.0f}")
    print(f"  speed-up, 1-step student vs analytic teacher (Heun, 40 steps): {s['student_1step'] / s['teacher_analytic_heun40']:.1f}x")
    print(f"  speed-up, 1-step student vs network teacher (Heun, 40 steps):  {s['student_1step'] / s['teacher_network_heun40']:.1f}x")

    batches = [64, 128, 256, 512]
    m = memory(batches, dev)
    print("\n## memory of one training step (fresh process each; Distiller, lsif)")
    for b, v in m.items():
        print("  batch " + f"{b:4d}: " + ", ".join(f"{k} {x:.1f}" for k, x in v.items()))

    bt = race({b: loop_stepper(config("lsif", b), dev) for b in batches}, args.steps, max(1, args.rounds - 1), dev)
    print("\n## step time vs batch size (bregzoo loop, lsif, width 128)")
    for b, v in bt.items():
        print(f"  batch {b:4d}: {1e3 * v:8.2f} ms   ({v / bt[batches[0]]:.2f}x batch {batches[0]})")
    widths = [64, 128, 256]
    wt = race({w: loop_stepper(config("lsif", 256, w), dev) for w in widths}, args.steps, max(1, args.rounds - 1), dev)
    print("\n## step time vs backbone width (bregzoo loop, lsif, batch 256, mlp depth 3)")
    for w, v in wt.items():
        print(f"  width {w:4d}: {1e3 * v:8.2f} ms   ({v / wt[widths[0]]:.2f}x width {widths[0]})")
    print(f"\n# total {time.perf_counter() - started:.0f} s; load avg {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
