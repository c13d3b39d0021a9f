"""The Di-Bregman distillation loop (DESIGN.md §1, "One training step"), on Accelerate.

Accelerate does device placement (``prepare``), mixed precision (``autocast``), gradient sync
(``backward``), clipping, ``gather``, TensorBoard and ``save_state``/``load_state``. Nothing else
here is distributed-specific: every process draws the same *global* randomness for a step from one
seeded generator and takes its own slice, so N processes with batch B follow the same trajectory as
one process with batch N*B (up to float reduction order), and a resumed run replays the same noise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor

from bregzoo import io
from bregzoo.config import RunConfig, dotted
from bregzoo.networks import FeatureRatioHead, FeatureTap, diffuse
from bregzoo.teacher import per_sample, sample_ode, sampling_schedule
from bregzoo.train import rundir
from bregzoo.train.build import Parts, build, resolve
from bregzoo.train.checks import require_passed, run_claim_checks
from bregzoo.train.ema import EMA
from bregzoo.errors import BregzooError, NonFiniteError
from bregzoo.train.evaluate import directions, evaluate
from bregzoo.train.export import save_student
from bregzoo.train.plots import save_samples_png
from bregzoo.train.sampler import generate, generate_at, simulate, student_times
from bregzoo.train.weighting import WeightNormaliser, constant_weight
from bregzoo.train.weighting import resolve as resolve_weighting

Progress = Callable[[int, int, dict[str, float]], None]
EVAL_SEED_OFFSET = 1_000_003  # eval noise never overlaps the training stream of any nearby seed


@dataclass
class RunResult:
    """What a finished run reports back."""

    run_dir: Path
    steps: int
    seconds: float
    student: dict[str, float] = field(default_factory=dict)
    teacher: dict[str, float] = field(default_factory=dict)
    exact: dict[str, float] = field(default_factory=dict)  # the task's own samples: the metrics' noise floor
    better: dict[str, str] = field(default_factory=dict)  # metric key -> "lower" | "higher" | "exact" is better
    checks: list[dict[str, Any]] = field(default_factory=list)
    main_process: bool = True
    student_steps: int = 1  # generator calls per student sample


# -- randomness ----------------------------------------------------------------------------------

def draw_step_noise(rng: torch.Generator, parts: Parts, cfg: RunConfig, num_processes: int,
                    rank: int) -> dict[str, Any]:
    """All the randomness of one training step: the global batch drawn in a fixed order, then this
    process's slice, as (grad_accum, batch, ...) tensors on the CPU.

    A k-step student's noise is (batch, k, ...) per draw (bregzoo.train.sampler), and its step index
    ``idx`` is drawn last; at k = 1 neither adds a draw, so one-step runs replay the same stream.
    """
    a, p, b = cfg.train.grad_accum, num_processes, cfg.train.batch_size
    n, shape, sched = a * p * b, tuple(parts.dataset.data_shape), parts.schedule
    latent = tuple(parts.latent_shape or shape)  # the generator's noise; the same as shape unless train.extra_latent
    k = cfg.train.student_steps

    def mine(x: Tensor) -> Tensor:
        return rearrange(x, "(a p b) ... -> a p b ...", a=a, p=p)[:, rank]

    def draws() -> dict[str, Tensor]:
        out = {"eps": mine(torch.randn(n, k, *latent, generator=rng)),
               "t": mine(sched.sample_t(n, generator=rng)),
               "z": mine(torch.randn(n, *shape, generator=rng))}
        if k > 1:  # DMD2: each sample's generator step, drawn at random
            out["idx"] = mine(torch.randint(k, (n,), generator=rng))
        return out

    gen = draws()
    fake = [draws() for _ in range(cfg.train.fake_updates)]
    est = draws()
    est["z_ref"] = mine(torch.randn(n, *shape, generator=rng))
    est["x_ref"] = mine(parts.dataset.sample(n, generator=rng).float())
    return {"gen": gen, "fake": fake, "est": est}


# -- the distiller: three networks, three optimisers, one step -----------------------------------

class Distiller:
    """The generator, the fake denoiser and the ratio estimator, with one DESIGN.md training step."""

    def __init__(self, cfg: RunConfig, parts: Parts, accelerator: Any) -> None:
        self.cfg, self.parts, self.acc = cfg, parts, accelerator
        o = cfg.optim

        def adam(module: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
            return torch.optim.Adam(module.parameters(), lr=lr, betas=o.betas, weight_decay=o.weight_decay,
                                    foreach=True)  # one fused update per network: ~10% of a CPU step saved

        self.weighting = w = resolve_weighting(cfg.weighting, parts.divergence)
        # Without mixed precision Accelerate's autocast() is a nullcontext built behind an AcceleratorState lookup
        # and an env-flag parse: 14 of them cost ~0.4 ms of a 35 ms CPU step (benchmarks/perf.py's profile).
        self._autocast = (accelerator.autocast if getattr(accelerator, "native_amp", True)
                          else contextlib.nullcontext)
        (self.gen, self.fake, self.ratio, self.g_opt, self.f_opt, self.e_opt) = accelerator.prepare(
            parts.generator, parts.fake, parts.ratio, adam(parts.generator, o.lr_generator), adam(parts.fake, o.lr_fake),
            adam(parts.ratio, o.lr_estimator * w.estimator_lr_scale))  # the scale: the divergence's (weighting.py)
        self.teacher = parts.teacher.to(accelerator.device)
        self.ema = EMA(parts.generator, cfg.train.ema) if cfg.train.ema > 0 else None
        self.weights = WeightNormaliser(parts.divergence, parts.schedule, w.clamp, w.normalize, w.bins, w.bin_decay,
                                        w.truncate, w.warmup, w.defensive)
        self.step = 0  # generator steps completed
        # A divergence with a constant weight (reverse-KL: omega = 1, i.e. DMD) never reads the ratio,
        # so without a GAN term the estimator would be trained for nothing: skip it (~30% of a step).
        self.uses_estimator = cfg.weighting.gan > 0 or not constant_weight(parts.divergence)
        # train.ratio_net=shared: the estimator is a head on the fake denoiser's trunk, whose features a
        # forward hook hands over (networks.FeatureTap).
        self.tap = FeatureTap(parts.fake) if parts.ratio_net != "separate" and self.uses_estimator else None
        self._one_pass = isinstance(parts.ratio, FeatureRatioHead) and parts.ratio.conv is None  # vector features
        if cfg.train.compile:
            # In place (nn.Module.compile): the state dicts keep their keys, so checkpoints, the shipped
            # generator and resume are the same as without; the EMA copy (evaluation only) stays eager. A fake
            # denoiser that hands its trunk features to a shared estimator stays eager too: under dynamo the
            # FeatureTap's forward hook loses its effect (torch 2.14: the features come back None).
            for module in (parts.generator, parts.ratio) + ((parts.fake,) if self.tap is None else ()):
                module.compile()
        self.rng = torch.Generator().manual_seed(cfg.train.seed)
        self.times = student_times(parts.schedule, cfg.train.student_steps, cfg.train.student_times)
        # Without a gradient scaler, FSDP, DeepSpeed or XLA, Accelerate's clip_grad_norm_ and optimizer step
        # are torch's (DDP has all-reduced the gradients in backward) behind importlib probes for optional
        # packages on every call (~0.5 ms each on a CPU, 8 a step; benchmarks/perf.py): call torch's directly.
        from accelerate.utils import DistributedType

        self._plain = accelerator.scaler is None and accelerator.distributed_type in (
            DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)

    @property
    def student(self) -> torch.nn.Module:
        """The network that is evaluated and shipped: the EMA generator when EMA is on."""
        return self.ema.shadow if self.ema is not None else self.parts.generator

    def _on_device(self, noise: dict[str, Tensor], i: int) -> dict[str, Tensor]:
        return {k: v[i].to(self.acc.device) for k, v in noise.items()}

    @torch.no_grad()
    def _student_outputs(self, nz: dict[str, Tensor]) -> Tensor:
        """Fresh student outputs x0 for the fake denoiser and the estimator: the same draws (backward
        simulation to a random level, for k > 1) as the generator's loss sees, without gradient."""
        with self._autocast():
            return generate_at(self.parts.generator, self.parts.schedule, nz["eps"], self.times, nz.get("idx")).float()

    def _optimizer_step(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> Tensor:
        """Clip, step, zero; the gradient norm stays on the device (read only at the logging interval)."""
        clip, plain = self.cfg.optim.grad_clip, self._plain and self.acc.sync_gradients
        if clip <= 0:
            norm = torch.zeros((), device=self.acc.device)
        elif plain:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
        else:
            norm = self.acc.clip_grad_norm_(model.parameters(), clip)
        inner = opt.optimizer if plain else opt  # what AcceleratedOptimizer.step/zero_grad would call
        inner.step()
        inner.zero_grad(set_to_none=True)
        return torch.as_tensor(norm).detach().float()

    def _edm_weight(self, t: Tensor) -> Tensor:
        """EDM's loss weight (s^2 + sd^2)/(s sd)^2: unit-variance targets for the network at every s."""
        s2, sd2 = self.parts.schedule.s(t).double().square(), self.parts.sigma_data ** 2
        return ((s2 + sd2) / (s2 * sd2)).float()

    def train_step(self, noise: dict[str, Any]) -> dict[str, Tensor]:
        """One generator step, k fake-denoiser steps and (when its ratio is used) one estimator step."""
        acc, parts, sched = self.acc, self.parts, self.parts.schedule
        accum = self.cfg.train.grad_accum
        logs: dict[str, Tensor] = {}

        # 1-3. Generator: x0 = G(eps), x_t, D_teacher, D_fake and l = log r with no gradient, then
        # the DMD regression to sg(x0 - g) with g = omega (D_fake - D_teacher) / mean|x0 - D_teacher|.
        # A k-step student's input at its random level comes from its own chain, run without gradient
        # (DMD2's backward simulation); only the last call, at that level, is differentiated.
        for i in range(accum):
            nz = self._on_device(noise["gen"], i)
            t = nz["t"]
            with torch.no_grad(), self._autocast():
                x_in, t_in = simulate(parts.generator, sched, nz["eps"], self.times, nz.get("idx"))
            with self._autocast():
                x0 = self.gen(x_in, t_in).float()
            with torch.no_grad():
                xt = diffuse(x0.detach(), t, sched, nz["z"])
                d_real = self.teacher.denoise(xt, t).float()
                with self._autocast():
                    d_fake, ell = self._fake_and_log_ratio(xt, t)
            omega = self.weights(ell, t, acc.gather, self.step)
            normaliser = (reduce((x0.detach() - d_real).abs(), "b ... -> b", "mean").clamp_min(1e-12)
                          if self.cfg.weighting.dmd_normaliser else torch.ones_like(omega))
            g = per_sample(omega / normaliser, x0) * (d_fake - d_real)
            loss_dm = 0.5 * reduce((x0 - (x0 - g).detach()).square(), "b ... -> b", "mean").mean()
            loss = loss_dm
            if self.cfg.weighting.gan > 0:
                # Non-saturating GAN term: the estimator's logit for "teacher" is -l, so the generator
                # minimises softplus(l) at its own diffused samples; the estimator itself stays fixed.
                frozen = [parts.ratio] + ([parts.fake] if self.tap is not None else [])
                for m in frozen:
                    m.requires_grad_(False)
                with self._autocast():
                    x_g = diffuse(x0, t, sched, nz["z"])
                    out_g = parts.ratio(self.tap.features(parts.fake, x_g, t), t) if self.tap else parts.ratio(x_g, t)
                    ell_g = parts.estimator.log_ratio(out_g).float()
                for m in frozen:
                    m.requires_grad_(True)
                loss_gan = F.softplus(ell_g).mean()
                loss = loss + self.cfg.weighting.gan * loss_gan
                logs["loss_gan"] = loss_gan.detach()
            acc.backward(loss / accum)
        if self.cfg.optim.generator_decay == "cosine":  # a function of the step alone, so resume replays it
            lr = self.cfg.optim.lr_generator * 0.5 * (1 + math.cos(math.pi * self.step / self.cfg.train.steps))
            for group in self.g_opt.param_groups:
                group["lr"] = lr
        logs["grad_norm_g"] = self._optimizer_step(self.gen, self.g_opt)
        if self.ema is not None:
            self.ema.update(parts.generator, self.step)
        logs.update(loss_dm=loss_dm.detach(), omega_mean=omega.mean().detach(), omega_max=omega.max().detach())
        if self.uses_estimator:
            logs["ell_student"] = ell.mean().detach()

        # 4a. Fake denoiser: k DSM updates on fresh samples of the just-updated generator. A shared estimator's
        # head takes its student features from the last update's trunk pass (4b).
        head: list[tuple[Tensor, Tensor]] = []  # (loss, output at reference x_t) of the shared head, per micro-batch
        for j, noise_j in enumerate(noise["fake"]):
            share = self.tap is not None and j == len(noise["fake"]) - 1
            for i in range(accum):
                nz = self._on_device(noise_j, i)
                x0 = self._student_outputs(nz)
                xt = diffuse(x0, nz["t"], sched, nz["z"])
                if share:
                    loss_fake, loss_head, out_ref = self._fake_and_head_loss(xt, x0, nz["t"], self._on_device(noise["est"], i))
                    head.append((loss_head.detach(), out_ref))
                    acc.backward((loss_fake + loss_head) / accum)
                    continue
                with self._autocast():
                    d = self.fake(xt, nz["t"]).float()
                loss_fake = self._dsm_loss(d, x0, nz["t"])
                acc.backward(loss_fake / accum)
            self._optimizer_step(self.fake, self.f_opt)
            logs["loss_fake"] = loss_fake.detach()

        # 4b. Ratio estimator: BR_h on (reference x_t from the task's data, student x_t), same times.
        if head:
            self._optimizer_step(self.ratio, self.e_opt)
            logs.update(loss_est=head[-1][0], ell_ref=parts.estimator.log_ratio(head[-1][1]).mean())
        elif self.uses_estimator:
            logs.update(self._estimator_update(noise["est"]))
        self.step += 1
        return logs

    def _n_ref(self, n: int) -> int:
        """How many of a micro-batch of ``n`` reference draws the estimator uses (train.ref_fraction): the
        first ones, so the random stream, and with it resume, is the same at every fraction."""
        return max(1, round(self.cfg.train.ref_fraction * n))

    def _dsm_loss(self, d: Tensor, x0: Tensor, t: Tensor) -> Tensor:
        return (self._edm_weight(t) * reduce((d - x0).square(), "b ... -> b", "mean")).mean()

    def _fake_and_log_ratio(self, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """D_fake(x_t) and l = log r(x_t), no gradient; a shared estimator reads the same trunk pass."""
        parts = self.parts
        if not self.uses_estimator:
            return parts.fake(xt, t).float(), torch.zeros_like(t)
        if self.tap is None:
            return parts.fake(xt, t).float(), parts.estimator.log_ratio(parts.ratio(xt, t)).float()
        with self.tap.capture():
            d_fake = parts.fake(xt, t).float()
        return d_fake, parts.estimator.log_ratio(parts.ratio(self.tap.value, t)).float()

    def _fake_and_head_loss(self, xt: Tensor, x0: Tensor, t: Tensor, est: dict[str, Tensor]
                            ) -> tuple[Tensor, Tensor, Tensor]:
        """The fake denoiser's DSM loss at student x_t, and the shared head's BR_h loss on the trunk's features
        at that x_t and at a reference x_t of the same times, both from the trunk before this update moves it.

        With train.ratio_net=shared the head's loss reaches the trunk through both (DMD2); "shared-detached"
        detaches them, so the head alone learns. The reference pass stops at the features: no decoder. The
        two losses share one backward (a parameter used twice still gets one gradient hook call, as DDP
        needs). With vector features both batches go through one pass. Returns (DSM loss, head loss, head
        output at the reference samples).
        """
        parts, sched = self.parts, self.parts.schedule
        trunk = parts.ratio_net == "shared"
        m = self._n_ref(len(xt))
        t_ref = t[:m]
        x_ref = diffuse(est["x_ref"][:m], t_ref, sched, est["z_ref"][:m])
        with self._autocast():
            if trunk and self._one_pass:
                # Vector features (the MLP): only an output layer follows them, so one pass over both
                # batches costs less than two (~1.5 ms of 7 on a CPU, benchmarks/perf.py).
                with self.tap.capture():
                    d = self.fake(torch.cat([xt, x_ref]), torch.cat([t, t_ref])).float()[: len(xt)]
                f_stu, f_ref = self.tap.value[: len(xt)], self.tap.value[len(xt):]
            else:
                with self.tap.capture():
                    d = self.fake(xt, t).float()
                f_stu = self.tap.value if trunk else self.tap.value.detach()
                with torch.set_grad_enabled(trunk):
                    f_ref = self.tap.features(parts.fake, x_ref, t_ref)
            out = self.ratio(torch.cat([f_ref, f_stu]), torch.cat([t_ref, t])).float()
        out_ref, out_stu = out[:m], out[m:]
        return self._dsm_loss(d, x0, t), parts.estimator.loss(out_ref, out_stu), out_ref.detach()

    def _estimator_update(self, noise: dict[str, Tensor]) -> dict[str, Tensor]:
        acc, parts, sched = self.acc, self.parts, self.parts.schedule
        accum = self.cfg.train.grad_accum
        for i in range(accum):
            nz = self._on_device(noise, i)
            t = nz["t"]
            x0 = self._student_outputs(nz)
            x_stu = diffuse(x0, t, sched, nz["z"])
            m = self._n_ref(len(x_stu))
            x_ref = diffuse(nz["x_ref"][:m], t[:m], sched, nz["z_ref"][:m])
            with self._autocast():
                x_both, t_both = torch.cat([x_ref, x_stu]), torch.cat([t[:m], t])
                if self.tap is not None:  # shared head, no fake update this step to take features from
                    with torch.no_grad():
                        x_both = self.tap.features(parts.fake, x_both, t_both)
                out = self.ratio(x_both, t_both).float()
            out_ref, out_stu = out[:m], out[m:]
            loss_est = parts.estimator.loss(out_ref, out_stu)
            acc.backward(loss_est / accum)
        self._optimizer_step(self.ratio, self.e_opt)
        return {"loss_est": loss_est.detach(), "ell_ref": parts.estimator.log_ratio(out_ref).mean().detach()}

    def warmup_fake(self, updates: int) -> None:
        """DSM updates of the fake denoiser on the initial generator, before any generator step."""
        for _ in range(updates):
            noise = draw_step_noise(self.rng, self.parts, self.cfg, self.acc.num_processes, self.acc.process_index)
            for i in range(self.cfg.train.grad_accum):
                nz = self._on_device(noise["fake"][0] if noise["fake"] else noise["gen"], i)
                x0 = self._student_outputs(nz)
                xt = diffuse(x0, nz["t"], self.parts.schedule, nz["z"])
                with self._autocast():
                    d = self.fake(xt, nz["t"]).float()
                loss = self._dsm_loss(d, x0, nz["t"])
                self.acc.backward(loss / self.cfg.train.grad_accum)
            self._optimizer_step(self.fake, self.f_opt)

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, run: rundir.RunDir) -> Path:
        """accelerate save_state plus our own state, written under a temporary name then renamed."""
        acc, final = self.acc, run.checkpoint(self.step)
        tmp = final.with_name(f".{final.name}.tmp")
        try:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            acc.save_state(str(tmp))
            if acc.is_main_process:
                state = {"rng": self.rng.get_state()}
                state.update({f"weights.{k}": v for k, v in self.weights.state_dict().items()})
                if self.ema is not None:
                    state.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
                io.save_file(state, tmp / "train_state.safetensors", metadata={
                    "step": str(self.step), **rundir.identity_metadata(self.cfg)})
                io.usual_permissions(tmp)  # accelerate's model.safetensors arrive 0600
            acc.wait_for_everyone()
            if acc.is_main_process:
                io.replace_dir(tmp, final)
        except Exception as exc:
            # A full disk surfaces as OSError, safetensors' SafetensorError or torch.save's RuntimeError
            # ("unexpected pos"): whichever, the half-written directory goes and the last checkpoint stays.
            shutil.rmtree(tmp, ignore_errors=True)
            raise BregzooError(
                f"step {self.step}: writing checkpoint {final} failed ({_first_line(exc)}; {_free_space(run.root)}); "
                f"nothing of it was kept, the last complete checkpoint is {run.latest_checkpoint() or 'none'}. Free "
                f"some space (or lower train.keep_checkpoints), then continue with --resume {run.root}") from exc
        if acc.is_main_process:
            run.prune_checkpoints(self.cfg.train.keep_checkpoints)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything ``save_checkpoint`` wrote (weights-only loading throughout).

        A checkpoint that cannot be read (truncated, edited, another architecture, a pickle that is not
        plain tensors) is one user error naming it, never a traceback; so is a checkpoint of another config
        (config.json edited since it was written, beyond the keys a resume may change).
        """
        rundir.check_resumable(path, self.cfg)
        try:
            self.acc.load_state(str(path))
            state = io.load_file(path / "train_state.safetensors")
            self.step = int(io.read_metadata(path / "train_state.safetensors")["step"])
            self.rng.set_state(state["rng"])
            self.weights.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("weights.")})
            if self.ema is not None:
                self.ema.load_state_dict({k[4:]: v.to(self.acc.device) for k, v in state.items() if k.startswith("ema.")})
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise BregzooError(
                f"--resume: checkpoint {path} cannot be loaded ({type(exc).__name__}: {first}); it is corrupt or "
                "does not match the run's config: delete it to resume from the previous checkpoint, or start a new run"
            ) from None

    # -- evaluation ---------------------------------------------------------------------------
    @torch.no_grad()
    def student_samples(self, n: int) -> Tensor:
        """n student samples from fixed noise (the same at every evaluation), through its whole k-step chain."""
        g = torch.Generator().manual_seed(self.cfg.train.seed + EVAL_SEED_OFFSET)
        latent = self.parts.latent_shape or self.parts.dataset.data_shape
        eps = torch.randn(n, len(self.times), *latent, generator=g).to(self.acc.device)
        with self._autocast():
            return torch.cat([generate(self.student, self.parts.schedule, e, self.times).float().cpu()
                              for e in eps.split(4096)])

    @torch.no_grad()
    def teacher_samples(self, n: int) -> Tensor:
        """n samples of the teacher's ODE sampler (the multi-step baseline the student is measured against)."""
        g = torch.Generator().manual_seed(self.cfg.train.seed + 2 * EVAL_SEED_OFFSET)
        noise = torch.randn(n, *self.parts.dataset.data_shape, generator=g).to(self.acc.device)
        e = self.cfg.eval
        sched = sampling_schedule(self.parts.schedule, self.teacher, e.teacher_sigma_max)
        return torch.cat([sample_ode(self.teacher.denoise, sched, chunk, e.teacher_steps,
                                     e.teacher_sampler).float().cpu() for chunk in noise.split(4096)])

    @torch.no_grad()
    def exact_samples(self, n: int) -> Tensor | None:
        """n samples of the task's own distribution (a mixture's exact sampler, or real data), from a
        seed no other evaluation uses: their metrics are the noise floor a student is read against."""
        sample = getattr(self.parts.dataset, "sample", None)
        if sample is None:
            return None
        return sample(n, generator=torch.Generator().manual_seed(self.cfg.train.seed + 3 * EVAL_SEED_OFFSET)).float()


# -- the run -------------------------------------------------------------------------------------

def default_out(cfg: RunConfig) -> str:
    """runs/<task>-<divergence>-s<seed>, from the component names."""
    from bregzoo.registry import parse_spec

    return f"runs/{parse_spec(cfg.task)[0]}-{parse_spec(cfg.divergence)[0]}-s{cfg.train.seed}"


# The logged scalars a run stops on when they are NaN or inf, and what each one is.
TERMS = {"loss_dm": "the generator's weighted distribution-matching loss", "loss_gan": "the generator's GAN term",
         "loss_fake": "the fake denoiser's score-matching loss", "loss_est": "the ratio estimator's BR_h loss",
         "omega_mean": "the generator weight omega", "omega_max": "the generator weight omega"}


class NonFiniteWatch:
    """The first step at which a watched term (TERMS) went NaN or inf, and which terms did, tracked on the
    device: watching is a few tensor ops per step, and only ``check`` reads anything back to the host."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._scalars = False
        self.first_step: Tensor | None = None  # -1 while every step so far was finite
        self.first_terms: Tensor | None = None

    def observe(self, logs: dict[str, Tensor], step: int) -> None:
        if self.first_step is None:
            self.names = [k for k in TERMS if k in logs]
            self._scalars = all(logs[k].dim() == 0 and logs[k].dtype == logs[self.names[0]].dtype for k in self.names)
        if self._scalars:  # the loop's case: one isfinite over the stacked terms, not one per term
            bad = ~torch.isfinite(torch.stack([logs[k].detach() for k in self.names]))
        else:
            bad = torch.stack([~torch.isfinite(logs[k].detach()).all() for k in self.names])
        if self.first_step is None:
            self.first_step = torch.full((), -1, dtype=torch.long, device=bad.device)
            self.first_terms = torch.zeros_like(bad)
        new = (self.first_step < 0) & bad.any()
        self.first_terms = torch.where(new, bad, self.first_terms)
        self.first_step = torch.where(new, step, self.first_step)

    def check(self, acc: Any) -> tuple[int, list[str]] | None:
        """(first bad step, its bad terms) on any process, or None; every process gets the same answer."""
        if self.first_step is None:
            return None
        row = torch.cat([self.first_step[None], self.first_terms.long()])[None]
        if acc.num_processes > 1:
            row = acc.gather(row.to(acc.device))
        rows = [r for r in row.cpu().tolist() if r[0] >= 0]
        if not rows:
            return None
        step = min(r[0] for r in rows)
        return step, [k for i, k in enumerate(self.names) if any(r[1 + i] for r in rows if r[0] == step)]


def _cpu_only_multiprocess() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: " + ((str(exc).strip().splitlines() or [""])[0][:200])
    return f"{text} [{exc.strerror}]" if isinstance(exc, OSError) and exc.strerror and exc.strerror not in text else text


def _free_space(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path).free / 2**20:.1f} MiB free there"
    except OSError:
        return "free space unknown"


def _steps(k: int) -> str:
    return f"{k} step" if k == 1 else f"{k} steps"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _finite(d: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def train(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False, check: bool = True, force: bool = False,
          progress: Progress | None = None, accelerator: Any = None) -> RunResult:
    """Distill ``cfg.teacher`` into a one-step (or ``train.student_steps``-step) generator; write the run
    directory ``cfg.out``.

    ``resume`` continues the run in ``cfg.out`` from its latest checkpoint. ``check`` runs the quick
    unification claims for the divergence and estimator first (recorded in config.json); a failure
    stops the run unless ``force``. ``progress(step, total, logs)`` is called on the main process
    after every step.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    started = time.perf_counter()
    if cfg.train.cpu_threads:
        # Contended OpenMP threads are 5-8x slower than one thread for the 2-D MLPs on a loaded 2-core box.
        torch.set_num_threads(cfg.train.cpu_threads)
    if cfg.out is None:
        cfg = cfg.replace(out=default_out(cfg))
    root = Path(cfg.out)

    # -- accelerator, components, run directory
    acc = accelerator or Accelerator(
        # On a machine without a GPU, processes started by torchrun or `accelerate launch` must use CPU
        # (gloo) explicitly, or each would silently train alone.
        cpu=_cpu_only_multiprocess(),
        mixed_precision=cfg.train.mixed_precision, log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(root), logging_dir=str(root)))
    lock = None
    if resume:  # a run checkpointed before a behaviour-changing default keeps its old behaviour
        cfg = rundir.with_legacy_defaults(root, cfg)
    try:
        resolve(cfg)  # every spec, metrics included, exactly as train --dry-run checks them
        parts = build(cfg)
        checks = run_claim_checks(parts.divergence, parts.estimator) if check else []
        require_passed(checks, force)
        # One training per directory: a second one on it is refused while this one runs.
        lock = rundir.claim(root, resume, overwrite) if acc.is_main_process else None
        acc.wait_for_everyone()
        run = rundir.RunDir(root)
        if lock is not None and lock.taken_over:
            acc.print(f"{root}: took over the lock of pid {lock.taken_over}, which is no longer running")
        distiller = Distiller(cfg, parts, acc)
        if resume:  # load before writing anything: a checkpoint that cannot be read leaves the run untouched
            ckpt = run.latest_checkpoint()
            distiller.load_checkpoint(ckpt)
            if cfg.train.steps < distiller.step:  # before config.json is rewritten: it would claim fewer steps
                raise BregzooError(f"--resume {root}: the run is already at step {distiller.step}, past --steps "
                                   f"{cfg.train.steps}; give --steps {distiller.step} or more (or leave it out)")
        if acc.is_main_process:
            # Every resume is recorded: the step it continued from, when, and the new total of steps.
            resumes = rundir.resumes(run) + ([{"step": distiller.step, "time": _now(), "steps": cfg.train.steps}]
                                             if resume else [])
            io.write_json(run.config, {
                rundir.MARKER: 1, "config": cfg.to_dict(), "resumes": resumes, "components": parts.provenance,
                "checks": checks, "init_from_teacher": parts.from_teacher,
                "estimator_trained": distiller.uses_estimator,
                "ratio_net": parts.ratio_net,  # train.ratio_net resolved ("auto": shared for vector features)
                # the weighting this divergence trains with ("auto" and None resolved; docs/math.md)
                "weighting": dataclasses.asdict(distiller.weighting),
                "num_processes": acc.num_processes, "device": str(acc.device),
                "global_batch": cfg.train.batch_size * acc.num_processes * cfg.train.grad_accum,
                "torch": torch.__version__, "sigma_data": parts.sigma_data,
                "student_times": list(distiller.times),  # the k noise levels, train.student_times resolved
            })
        if resume:
            if acc.is_main_process:
                run.truncate_metrics(distiller.step)
            acc.print(f"resumed from {ckpt} at step {distiller.step}")
        acc.init_trackers("tb", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                         for k, v in dotted(cfg.to_dict(), "/").items()})

        # -- the teacher's sampler: the baseline every student number is compared with
        teacher_x, teacher_m = None, {}
        if acc.is_main_process:
            teacher_x = distiller.teacher_samples(cfg.eval.samples)
            teacher_m = evaluate(teacher_x, parts.dataset, cfg.eval.final_metrics)
            run.log({"step": distiller.step, "split": "teacher", **teacher_m})
        exact_m: dict[str, float] = {}
        exact_x = distiller.exact_samples(cfg.eval.samples) if acc.is_main_process else None
        if exact_x is not None:
            exact_m = evaluate(exact_x, parts.dataset, cfg.eval.final_metrics)
            run.log({"step": distiller.step, "split": "exact", **exact_m})

        def evaluate_student(final: bool) -> dict[str, float]:
            x = distiller.student_samples(cfg.eval.samples)
            m = evaluate(x, parts.dataset, cfg.eval.final_metrics if final else cfg.eval.metrics)
            run.log({"step": distiller.step, "split": "final-student" if final else "student", **m})
            acc.log({f"eval/{k}": v for k, v in _finite(m).items()}, step=distiller.step)
            save_samples_png(run.samples, {
                f"teacher ({cfg.eval.teacher_sampler}, {cfg.eval.teacher_steps} steps)": teacher_x,
                f"student ({_steps(len(distiller.times))}, step {distiller.step})": x}, parts.dataset,
                suptitle=f"{cfg.task}  divergence={cfg.divergence}  estimator={cfg.estimator}  schedule={cfg.schedule}")
            return m

        # -- training
        if distiller.step == 0 and cfg.train.fake_warmup:
            distiller.warmup_fake(cfg.train.fake_warmup)
        shown: dict[str, float] = {}
        watch = NonFiniteWatch()
        while distiller.step < cfg.train.steps:
            noise = draw_step_noise(distiller.rng, parts, cfg, acc.num_processes, acc.process_index)
            logs = distiller.train_step(noise)
            step = distiller.step
            watch.observe(logs, step)
            log_now = step % cfg.train.log_every == 0 or step == cfg.train.steps
            eval_now = step % cfg.train.eval_every == 0 and step < cfg.train.steps
            save_now = step % cfg.train.checkpoint_every == 0 and step < cfg.train.steps
            # Read back (a host sync) only where something is logged or saved: stop before anything from
            # a step at or after the first non-finite one is, so the last checkpoint stays the last good one.
            bad = watch.check(acc) if log_now or eval_now or save_now else None
            if bad:
                last = run.latest_checkpoint()
                raise NonFiniteError(
                    f"step {bad[0]}: {', '.join(f'{k} ({TERMS.get(k, k)})' for k in bad[1])} became NaN or inf; "
                    f"the run stopped at step {step} without saving any step since. Last good checkpoint: "
                    f"{last or 'none'}. Lower the learning rates or set weighting.clamp (e.g. --set "
                    "weighting.clamp=10), then train again")
            if log_now:
                names = sorted(logs)
                values = acc.gather(torch.stack([logs[k].float().to(acc.device) for k in names])[None])  # one read-back
                latest = dict(zip(names, reduce(values, "p k -> k", "mean").tolist()))
                shown.update(latest)  # keeps the last eval metrics for the progress bar
                acc.log({f"train/{k}": v for k, v in latest.items()}, step=step)
                if acc.is_main_process:
                    run.log({"step": step, "split": "train", **latest})
            if eval_now and acc.is_main_process:
                shown.update(evaluate_student(final=False))
            if save_now:
                distiller.save_checkpoint(run)
            if progress is not None and acc.is_main_process:
                progress(step, cfg.train.steps, shown)

        # -- the end: checkpoint, shipped student, final metrics and samples.png
        # A run resumed from its final checkpoint already has it; re-saving would briefly leave no
        # directory under that name (replace_dir moves the old one aside first).
        if not run.checkpoint(distiller.step).exists():
            distiller.save_checkpoint(run)
        student_m: dict[str, float] = {}
        if acc.is_main_process:
            save_student(run.generator, distiller.student, cfg, distiller.step, distiller.times)
            student_m = evaluate_student(final=True)
            run.log({"step": distiller.step, "split": "final-teacher", **teacher_m})
        acc.wait_for_everyone()
        return RunResult(run.root, distiller.step, time.perf_counter() - started, student_m, teacher_m, exact_m,
                         directions(*cfg.eval.final_metrics), checks, acc.is_main_process, len(distiller.times))
    finally:
        if lock is not None:
            lock.release()
        if accelerator is None:
            acc.end_training()  # finishes trackers and destroys the process group (gloo aborts at exit otherwise)
            if acc.num_processes == 1:
                # Accelerate keeps process-wide state; forget it so a later run in this process may
                # choose another mixed precision (tests, notebooks, benchmarks).
                from accelerate.state import AcceleratorState

                AcceleratorState._reset_state(reset_partial_state=True)
