"""Claim 1: the closed-form weight log omega(l) = log(r h''(r)) agrees with autograd through h.

The reference differentiates the plugin's own ``h`` twice with autograd in float64. Where h is
written in a form that cancels (e.g. (r-1)^2/r at r = e^20 is r - 2 + 1/r, and h'' = 2/r^3 is lost
under r), no float64 method can recover h'' from h, so the reference itself is noise there. Its
noise is measured, not assumed: the reference is recomputed at l + k*1e-9, k = -3..3, a straight
line is fitted through the seven values, and the largest residual is the noise. Points whose
noise exceeds tol/20 are left out and reported. The claim fails outright if the usable points do
not cover |l| <= 5 or half the range.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bregzoo.check.result import ClaimResult
from bregzoo.divergence import Divergence

WEIGHT_TOL = 1e-6
ELL_MAX = 20.0
_OFFSETS = torch.arange(-3, 4, dtype=torch.float64)
_STEP = 1e-9


def autograd_derivatives(div: Divergence, ell: Tensor) -> tuple[Tensor, Tensor]:
    """h'(r) and h''(r) at r = exp(ell) by autograd through ``div.h`` alone, in float64."""
    with torch.enable_grad():
        r = ell.detach().double().exp().requires_grad_(True)
        (d1,) = torch.autograd.grad(div.h(r).sum(), r, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), r)
    return d1.detach(), d2


def _line_residual(values: Tensor) -> Tensor:
    """Largest residual of a least-squares line through values (K, N) at the offsets, per point."""
    k = _OFFSETS[:, None]
    fit = values.mean(0) + k * (k * values).sum(0) / k.square().sum()
    return (values - fit).abs().max(0).values


def reference(div: Divergence, ell: Tensor) -> dict[str, Tensor]:
    """Autograd h', h'', log omega at ``ell`` with their measured noise (relative, per point)."""
    d1s, d2s = zip(*(autograd_derivatives(div, ell + k * _STEP) for k in _OFFSETS.tolist()))
    d1, d2 = torch.stack(d1s), torch.stack(d2s)
    r = ell.exp()
    omega = r * d2[3]
    with torch.no_grad():
        log_omega = torch.log(r * d2)
        noise_w = _line_residual(log_omega)  # log-space noise = relative noise of omega and h''
        noise_d1 = _line_residual(d1) / (d1[3].abs() + omega.abs())
    return {"d1": d1[3], "d2": d2[3], "log_omega": log_omega[3], "noise_w": noise_w, "noise_d1": noise_d1}


def _skipped(ell: Tensor, mask: Tensor) -> str:
    """Which l were left out, as text: how many, and the span they fall in."""
    out = ell[~mask]
    return f"skipped {out.numel()}/{ell.numel()} points in l∈[{float(out.min()):.1f}, {float(out.max()):.1f}]"


def _usable(ell: Tensor, noise: Tensor, ref: Tensor, tol: float) -> tuple[Tensor, str | None, str]:
    """(mask of usable points, failure reason or None, note on what was skipped)."""
    mask = torch.isfinite(ref) & torch.isfinite(noise) & (noise < tol / 20)
    note = f"{_skipped(ell, mask)}: float64 autograd of h is noise there" if not bool(mask.all()) else ""
    core = ell.abs() <= 5
    if not bool(mask[core].all()) or float(mask.double().mean()) < 0.5:
        return mask, "autograd reference from h is unusable on |l| <= 5 or on half the range", note
    return mask, None, note


def weight_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """weight-autograd: log_weight(l) vs log(r h''(r)) from autograd of h, l in [-20, 20]."""
    ell = torch.linspace(-ELL_MAX, ELL_MAX, 401 if quick else 4001, dtype=torch.float64)
    ref = reference(div, ell)
    got = div.log_weight(ell.clone()).double()
    mask, reason, note = _usable(ell, ref["noise_w"], ref["log_omega"], WEIGHT_TOL)
    diff = (got - ref["log_omega"])[mask]
    abs_err, rel_err, where = _worst(diff, ell[mask], relative=(diff.exp() - 1).abs())
    source = "closed form" if div.has_closed_form_weight else "autograd fallback"
    detail = "; ".join(t for t in (source, reason, note, where) if t)
    passed = reason is None and rel_err < WEIGHT_TOL
    return [ClaimResult("weight-autograd", div.spec(), "log w(l) vs log(r h''(r)) by autograd, l∈[-20,20]",
                        abs_err, rel_err, WEIGHT_TOL, passed, detail)]


def derivatives_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """derivs-autograd: dh and d2h vs autograd of h (h' relative to |h'| + omega, h'' relative)."""
    ell = torch.linspace(-ELL_MAX, ELL_MAX, 401 if quick else 4001, dtype=torch.float64)
    ref = reference(div, ell)
    r = ell.exp()
    m1, reason1, note1 = _usable(ell, ref["noise_d1"], ref["d1"], WEIGHT_TOL)
    m2, reason2, note2 = _usable(ell, ref["noise_w"], ref["log_omega"], WEIGHT_TOL)
    scale1 = ref["d1"].abs() + r * ref["d2"].abs()
    d1 = (div.dh(r.clone()).double() - ref["d1"])
    d2 = (div.d2h(r.clone()).double() - ref["d2"])
    _, e1, w1 = _worst(d1[m1], ell[m1], relative=(d1 / scale1).abs()[m1], label="h'")
    _, e2, w2 = _worst(d2[m2], ell[m2], relative=(d2 / ref["d2"]).abs()[m2], label="h''")
    rel_err, where = (e1, w1) if e1 >= e2 else (e2, w2)
    reason = reason1 or reason2
    note = note2 or note1
    detail = "; ".join(t for t in (reason, note, where) if t)
    # h'' spans e^-60..e^40 over the range, so its absolute error means nothing: report log-space.
    log_err = torch.nan_to_num(torch.log1p(d2 / ref["d2"]).abs()[m2], nan=math.inf)
    abs_err = max(e1, float(log_err.max()) if log_err.numel() else math.inf)
    return [ClaimResult("derivs-autograd", div.spec(), "h'(r), h''(r) vs autograd of h (scaled), l∈[-20,20]",
                        abs_err, rel_err, WEIGHT_TOL, reason is None and rel_err < WEIGHT_TOL, detail)]


def _worst(diff: Tensor, ell: Tensor, relative: Tensor, label: str = "") -> tuple[float, float, str]:
    """(max |diff|, max relative, where the relative error peaks); NaN counts as infinite."""
    if diff.numel() == 0:
        return math.inf, math.inf, "no usable points"
    relative = torch.where(torch.isnan(relative), torch.full_like(relative, math.inf), relative)
    i = int(relative.argmax())
    abs_err = float(torch.nan_to_num(diff.abs(), nan=math.inf).max())
    return abs_err, float(relative[i]), f"worst{' ' + label if label else ''} at l = {float(ell[i]):.2f}"
