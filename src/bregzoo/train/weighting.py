"""Taming the generator weight omega = r h''(r) before it multiplies the DMD gradient.

Everything is computed in log space from l = log r (the estimator's output), in float64, so a weight
that grows like r or r^2 never overflows before it is normalised. In order:

1. ``clamp``: l is clamped to [-clamp, clamp], and always to the +-50 that ``bregzoo check`` verifies.
2. ``warmup``: for the first ``warmup`` generator steps the log-weight is scaled by step/warmup, so the
   run starts as DMD (omega = 1) while the ratio estimator learns, and reaches the divergence's own
   weight at the end of the ramp.
3. ``normalize``:
   - ``batch``: divide omega by its mean over the global batch (all processes): self-normalised
     weights. The gradient's direction is the divergence's; only its scale is fixed per step.
   - ``ema-bins``: divide omega by an EMA of its mean in its time bin, as f-distill does (Xu et al.
     2025, "One-step diffusion models with f-divergence distribution matching", Sec. 4): the weight's
     scale varies strongly with the noise level, and a per-bin running mean removes that without
     letting one batch set the scale;
   - ``none``.
4. ``truncate``: a normalised weight is capped at ``truncate`` times the mean: truncated importance
   sampling (Ionides 2008), which bounds the variance that one sample with a huge ratio can put into
   the step. With ``batch`` the batch is then renormalised; with ``ema-bins`` the cap is relative to
   the bin's running mean, which is itself fed truncated weights. Only with ``batch`` or ``ema-bins``.
5. ``defensive``: (1 - lambda) omega + lambda, a share lambda of the constant weight mixed in
   (defensive importance sampling, Hesterberg 1995): up to the per-bin scale, the weight of
   h_lambda = (1 - lambda) h + lambda r log r, which has the same minimiser. Off (0) by default: it keeps
   lsif's modes in 16-D only at lambda >= 0.5, where the run is half DMD (docs/math.md §8 item 5).

``estimator_lr_scale`` is not applied here: the loop trains the ratio estimator at ``optim.lr_estimator``
times it (3 for a weight that grows like r, see GROWING).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch import Tensor

from bregzoo.bregman import clamped_log_weight
from bregzoo.config import WeightingConfig
from bregzoo.divergence import Divergence
from bregzoo.schedules import Schedule

Gather = Callable[[Tensor], Tensor]

# The default for a weight read from the estimated ratio (benchmarks/results/study/, docs/math.md).
# The estimator is untrained at step 0, so its weights are noise until it has seen the student:
# without the ramp lsif loses modes within the first 500 steps and never gets them back.
STABILISED = {"normalize": "ema-bins", "truncate": 2.0, "warmup": 500}
# A weight that grows at least like r (lsif, squared: omega = r) is largest where the student
# over-produces, i.e. on the bulk of its own samples, and every error of the estimated l there passes
# into log omega one for one; an estimator that lags the moving student gives stale weights to most of
# the batch. So a tighter cap, and an estimator that learns 3x faster. gmm8, 3 seeds, lsif's MMD²_b over
# reverse-kl's: 2.78x with neither, 1.99x with the cap, 1.78x with the faster estimator, 1.5x with both
# (benchmarks/results/study/lsif-stability*.md, docs/math.md §8).
GROWING = {"truncate": 1.5, "estimator_lr_scale": 3.0}


def constant_weight(div: Divergence) -> bool:
    """Whether omega(r) = r h''(r) is the same at every r (probed over l = log r in [-8, 8])."""
    w = div.log_weight(torch.linspace(-8.0, 8.0, 33, dtype=torch.float64))
    return bool(torch.isfinite(w).all() and (w - w[0]).abs().max() < 1e-9)


def growing_weight(div: Divergence) -> bool:
    """Whether omega grows at least like r for r > 1: log omega rises at least as fast as l = log r,
    probed on l in [0, 8]. True for lsif and squared (omega = r) and power with alpha >= 1; not for
    power(1/2) (omega ~ sqrt(r)) or any weight that is bounded or falls as r grows."""
    w = div.log_weight(torch.linspace(0.0, 8.0, 9, dtype=torch.float64))
    return bool(torch.isfinite(w).all() and (w.diff() >= 1.0 - 1e-6).all())


def resolve(cfg: WeightingConfig, div: Divergence) -> WeightingConfig:
    """The weighting a run uses: "auto" and None filled in from the divergence, explicit values kept.

    A constant weight (reverse-KL: DMD) needs nothing. Any other weight comes from the estimated
    ratio and gets STABILISED: per-time-bin normalisation, truncation at 2x the bin's mean, and a
    500-step ramp from DMD; a weight that grows at least like r is truncated at 1.5x, and its estimator
    learns at 3x optim.lr_estimator (GROWING). The
    rule reads the weight, never the divergence's name, so a plugin's divergence gets the same treatment.
    """
    stable = {} if constant_weight(div) else {**STABILISED, **(GROWING if growing_weight(div) else {})}
    normalize = stable.get("normalize", "none") if cfg.normalize == "auto" else cfg.normalize
    truncate = cfg.truncate
    if truncate is None:
        truncate = stable.get("truncate") if cfg.normalize == "auto" else None
    if truncate is not None and math.isinf(truncate):
        truncate = None
    warmup = stable.get("warmup", 0) if cfg.warmup is None else cfg.warmup
    lr_scale = stable.get("estimator_lr_scale", 1.0) if cfg.estimator_lr_scale is None else cfg.estimator_lr_scale
    defensive = stable.get("defensive", 0.0) if cfg.defensive is None else cfg.defensive
    return dataclasses.replace(cfg, normalize=normalize, truncate=truncate if normalize != "none" else None,
                               warmup=warmup, estimator_lr_scale=lr_scale, defensive=defensive)


def _log_mean_exp(log_w: Tensor) -> Tensor:
    return torch.logsumexp(log_w, 0) - math.log(log_w.numel())


class WeightNormaliser:
    """omega from l: clamped, ramped, normalised and truncated; holds the per-bin EMA state (saved in
    checkpoints)."""

    def __init__(self, div: Divergence, schedule: Schedule, clamp: float | None = None, mode: str = "none",
                 bins: int = 10, decay: float = 0.9, truncate: float | None = None, warmup: int = 0,
                 defensive: float = 0.0) -> None:
        self.div, self.schedule, self.clamp, self.mode, self.defensive = div, schedule, clamp, mode, defensive
        self.bins, self.decay, self.truncate, self.warmup = bins, decay, truncate, warmup
        self.bin_mean = torch.ones(bins, dtype=torch.float64)
        self.bin_seen = torch.zeros(bins, dtype=torch.bool)
        ends = torch.tensor([schedule.t_min, schedule.t_max], dtype=torch.float64)
        self._lo, self._hi = schedule.s(ends).log().tolist()  # once: .tolist() per step would be a host sync

    def bin_of(self, t: Tensor) -> Tensor:
        """Bin index of each time, by the position of log(sigma/alpha) in the schedule's range (on t's device)."""
        u = (self.schedule.s(t.detach().double()).log() - self._lo) / (self._hi - self._lo)
        return (u * self.bins).floor().long().clamp(0, self.bins - 1)

    def log_weight(self, ell: Tensor, step: int = 0) -> Tensor:
        """log omega (float64) after clamping and the warm-up ramp, before normalisation."""
        log_w = clamped_log_weight(self.div, ell, self.clamp).double()  # float64 from here on
        if self.warmup > 0 and step < self.warmup:
            log_w = log_w * (step / self.warmup)
        return log_w

    def __call__(self, ell: Tensor, t: Tensor, gather: Gather, step: int = 0) -> Tensor:
        """omega (B,) for log-ratios ``ell`` (B,) at times ``t`` at generator step ``step``; ``gather``
        joins all processes."""
        log_w = self.log_weight(ell, step)
        broken = torch.isnan(log_w) | (log_w == math.inf)  # a broken weight must stop the run, never be
        cap = math.inf if self.truncate is None else math.log(self.truncate)  # truncated into a finite one
        if self.mode == "batch":
            log_w = log_w - _log_mean_exp(gather(log_w))
            if self.truncate is not None:
                log_w = log_w.clamp(max=cap)
                log_w = log_w - _log_mean_exp(gather(log_w))
        elif self.mode == "ema-bins":
            # Each bin's scale is its own: one bin's outliers must not shrink the weights of another
            # noise level, so truncation is relative to the bin's mean and nothing is renormalised
            # across bins. The EMA is fed the truncated weights, so one outlier cannot set the scale.
            # The per-bin state lives on the weights' device: no host round trip per step.
            self.bin_mean, self.bin_seen = self.bin_mean.to(log_w.device), self.bin_seen.to(log_w.device)
            self._update(gather(log_w), gather(t.double()), cap)
            log_w = (log_w - self.bin_mean[self.bin_of(t)].log()).clamp(max=cap)
        omega = log_w.exp()
        if self.defensive > 0:
            omega = (1 - self.defensive) * omega + self.defensive
        return torch.where(broken, math.nan, omega).float()

    def _update(self, log_w: Tensor, t: Tensor, cap: float = math.inf) -> None:
        b = self.bin_of(t)
        seen_mean = self.bin_mean[b].log()  # truncate against the scale each bin has so far
        omega = torch.where(self.bin_seen[b], log_w.clamp(max=seen_mean + cap), log_w).exp()
        total = omega.new_zeros(self.bins).index_add_(0, b, omega)
        count = omega.new_zeros(self.bins).index_add_(0, b, torch.ones_like(omega))
        hit = count > 0
        # Masked with where, not boolean indexing: indexing by a mask would read its size back to the host.
        mean = total / count.clamp_min(1)
        ema = torch.where(self.bin_seen, self.decay * self.bin_mean + (1 - self.decay) * mean, mean)
        self.bin_mean = torch.where(hit, ema, self.bin_mean)
        self.bin_seen = self.bin_seen | hit

    def state_dict(self) -> dict[str, Tensor]:
        return {"bin_mean": self.bin_mean.cpu().clone(), "bin_seen": self.bin_seen.cpu().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.bin_mean = state["bin_mean"].to(torch.float64).clone()
        self.bin_seen = state["bin_seen"].to(torch.bool).clone()
