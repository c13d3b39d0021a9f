"""The Bregman engine, written once: the objective, the generator weight and the estimator loss.

Every function takes a ``Divergence`` and log-ratios ``ell = log(q/p)`` and returns per-sample
values; the caller reduces them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import lazy_loader

from bregzoo.divergence import Divergence

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy_loader.load("torch")  # on first use, as in bregzoo.divergence: registering an estimator needs none

# Estimator log-ratios beyond this are clamped in value, with the gradient passed straight through:
# a ratio past e^20 carries no information, and h(e^50) overflows float32 for the growing generators.
LOG_RATIO_LIMIT = 20.0
# Every l that reaches a divergence's log_weight is value-clamped to [-WEIGHT_LOG_RATIO_LIMIT,
# WEIGHT_LOG_RATIO_LIMIT] (inside any tighter weighting.clamp), and `bregzoo check` compares every
# weight with its reference on exactly this range, in float64 and float32: nothing unchecked reaches
# the loss. It is wide enough to change no realistic run (omega = r is then e^50, far into float32).
WEIGHT_LOG_RATIO_LIMIT = 50.0


def bregman_divergence(div: Divergence, r: Tensor, r0: Tensor) -> Tensor:
    """B_h(r, r0) = h(r) - h(r0) - h'(r0)(r - r0), elementwise; >= 0 for convex h."""
    r0 = torch.as_tensor(r0, dtype=r.dtype, device=r.device).expand_as(r)
    return div.h(r) - div.h(r0) - div.dh(r0) * (r - r0)


def objective(div: Divergence, ell_p: Tensor) -> Tensor:
    """Per-sample D_h(r||1) integrand B_h(r, 1) at teacher samples; its mean over p_t is D_f(q||p)."""
    return bregman_divergence(div, ell_p.exp(), torch.ones((), dtype=ell_p.dtype))


def soft_clamp(ell: Tensor, limit: float) -> Tensor:
    """Clamp the value of ``ell`` to [-limit, limit] while passing its gradient straight through."""
    return ell + (ell.clamp(-limit, limit) - ell).detach()


def clamped_log_weight(div: Divergence, ell: Tensor, clamp: float | None = None) -> Tensor:
    """log omega at ``ell`` clamped to +-WEIGHT_LOG_RATIO_LIMIT (the range ``bregzoo check`` verifies)
    and to a tighter ``clamp``; computed in ``ell``'s own dtype, as check's float32 claim verifies it."""
    limit = WEIGHT_LOG_RATIO_LIMIT if clamp is None else min(clamp, WEIGHT_LOG_RATIO_LIMIT)
    return div.log_weight(ell.detach().clamp(-limit, limit))


def generator_weight(
    div: Divergence, ell: Tensor, clamp: float | None = None, normalize: bool = False
) -> Tensor:
    """omega = exp(log_weight(ell)), with optional clamping of ell and batch-mean normalisation.

    ``ell`` is always clamped to +-WEIGHT_LOG_RATIO_LIMIT, the range ``bregzoo check`` verifies.
    """
    log_w = clamped_log_weight(div, ell, clamp)
    if normalize:  # divide by the batch mean in log space, so huge weights never overflow first
        log_w = log_w - (torch.logsumexp(log_w.flatten(), 0) - math.log(log_w.numel()))
    return log_w.exp()


def ratio_matching_loss(
    div: Divergence, ell_ref: Tensor, ell_student: Tensor, limit: float = LOG_RATIO_LIMIT
) -> tuple[Tensor, Tensor]:
    """Per-sample terms of BR_h (Sugiyama, Suzuki & Kanamori 2012) for r_hat = exp(ell).

    BR_h = E_p[h'(r)r - h(r)] - E_q[h'(r)], p the reference (teacher) and q the student samples.
    Returns (terms at reference samples, terms at student samples); the loss is the sum of means.
    """
    # float64 inside: h'(r)r - h(r) cancels catastrophically at large r in float32 (bkl, js).
    r_ref = soft_clamp(ell_ref, limit).double().exp()
    r_stu = soft_clamp(ell_student, limit).double().exp()
    ref_terms = div.dh(r_ref) * r_ref - div.h(r_ref)
    return ref_terms.to(ell_ref.dtype), (-div.dh(r_stu)).to(ell_student.dtype)
