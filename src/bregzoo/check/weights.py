"""Claim 1: the closed-form weight log omega(l) = log(r h''(r)) and h', h'' agree with autograd of h.

Range: every l that can reach ``log_weight`` in training, l in [-WEIGHT_LOG_RATIO_LIMIT,
WEIGHT_LOG_RATIO_LIMIT] (``bregzoo.bregman`` clamps to it before calling ``log_weight``), on a grid
of float32-representable points, because training calls ``log_weight`` in float32.

Reference: the plugin's own ``h`` differentiated twice in 256- and 384-bit arithmetic
(``bregzoo.check.precise``), so a closed form is never judged against float64 rounding in h. It
runs on a regular subgrid and wherever float64 autograd of h disagrees with the plugin's formulas;
elsewhere the two agree to 1% of the tolerance, and float64 autograd stands in (see
``reference``). A point where the two precisions disagree by more than REFERENCE_TOL is not
trusted (see below). If h uses an operation the high-precision evaluation cannot run, the reference
falls back to float64 autograd, whose noise is measured: it is recomputed at l + k*1e-9, k = -3..3,
a line is fitted through the seven values, and points whose largest residual exceeds tol/20 are not
trusted. A point the reference cannot settle is not verified, so the claim fails and names those
points.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from bregzoo.bregman import WEIGHT_LOG_RATIO_LIMIT
from bregzoo.check import precise
from bregzoo.check.result import ClaimResult
from bregzoo.divergence import Divergence

WEIGHT_TOL = 1e-6  # relative error of omega (and h', h'') in float64
FLOAT32_TOL = 1e-4  # relative error of omega from log_weight called in float32, as training does
REFERENCE_TOL = WEIGHT_TOL / 100  # a reference point counts only if it is this much better than tol
PRECISE_POINTS = 400  # h is differentiated in high precision on a subgrid of about this many points, at least
ELL_MAX = WEIGHT_LOG_RATIO_LIMIT
RANGE = f"l∈[-{ELL_MAX:g},{ELL_MAX:g}]"
_OFFSETS = torch.arange(-3, 4, dtype=torch.float64)
_STEP = 1e-9


def grid(quick: bool) -> Tensor:
    """The l of the weight claims: [-ELL_MAX, ELL_MAX], rounded to float32 so both dtypes see the same l."""
    return torch.linspace(-ELL_MAX, ELL_MAX, 401 if quick else 4001, dtype=torch.float64).float().double()


def autograd_derivatives(div: Divergence, ell: Tensor) -> tuple[Tensor, Tensor]:
    """h'(r) and h''(r) at r = exp(ell) by autograd through ``div.h`` alone, in float64."""
    with torch.enable_grad():
        r = ell.detach().double().exp().requires_grad_(True)
        (d1,) = torch.autograd.grad(div.h(r).sum(), r, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), r)
    return d1.detach(), d2


@dataclass(frozen=True)
class Reference:
    """h', h'', log omega at each l, which points may be used, and how the reference was made."""

    d1: Tensor
    d2: Tensor
    log_omega: Tensor
    usable_d1: Tensor
    usable_w: Tensor
    method: str
    high_precision: bool


def _line_residual(values: Tensor) -> Tensor:
    """Largest residual of a least-squares line through values (K, N) at the offsets, per point."""
    k = _OFFSETS[:, None]
    fit = values.mean(0) + k * (k * values).sum(0) / k.square().sum()
    return (values - fit).abs().max(0).values


def _float64_reference(div: Divergence, ell: Tensor, why: str) -> Reference:
    d1s, d2s = zip(*(autograd_derivatives(div, ell + k * _STEP) for k in _OFFSETS.tolist()))
    d1, d2 = torch.stack(d1s), torch.stack(d2s)
    r = ell.exp()
    with torch.no_grad():
        log_omega = torch.log(r * d2)
        noise_w = _line_residual(log_omega)  # log-space noise = relative noise of omega and h''
        noise_d1 = _line_residual(d1) / (d1[3].abs() + (r * d2[3]).abs())
    ok_w = torch.isfinite(log_omega[3]) & torch.isfinite(noise_w) & (noise_w < WEIGHT_TOL / 20)
    ok_d1 = torch.isfinite(d1[3]) & torch.isfinite(noise_d1) & (noise_d1 < WEIGHT_TOL / 20)
    return Reference(d1[3], d2[3], log_omega[3], ok_d1, ok_w,
                     f"float64 autograd of h ({why}); points where it is noise are skipped", False)


def _suspects(div: Divergence, ell: Tensor, d1: Tensor, d2: Tensor, log_omega: Tensor) -> Tensor:
    """Points where float64 autograd of h is non-finite, or disagrees with the plugin's own formulas
    (log_weight, dh, d2h in float64 by 1% of their tolerance, log_weight in float32 by 10%)."""
    r = ell.exp()
    bad = ~(torch.isfinite(d1) & torch.isfinite(d2) & torch.isfinite(log_omega))
    checks = (
        (lambda: div.log_weight(ell.clone()).double() - log_omega, WEIGHT_TOL / 100),
        (lambda: div.log_weight(ell.float()).double() - log_omega, FLOAT32_TOL / 10),
        (lambda: (div.dh(r.clone()).double() - d1) / (d1.abs() + r * d2.abs()), WEIGHT_TOL / 100),
        (lambda: (div.d2h(r.clone()).double() - d2) / d2, WEIGHT_TOL / 100),
    )
    for diff, limit in checks:
        try:
            err = diff().abs()
        except Exception:  # the claim that calls this formula reports the error itself
            continue
        if err.shape == ell.shape:
            bad |= ~(err <= limit)  # NaN counts as a disagreement
    return bad


def reference(div: Divergence, ell: Tensor) -> Reference:
    """The reference at ``ell``: h differentiated in high precision wherever it matters.

    Differentiating h in 256/384-bit arithmetic costs ~0.3 ms a point, so it runs on a regular
    subgrid of about PRECISE_POINTS points and wherever float64 autograd of h disagrees with the
    plugin's formulas. Elsewhere float64 autograd and the formulas agree to 1% of the tolerance (10%
    in float32), so no verdict depends on which of them is right. The subgrid also catches formulas
    that agree with float64 autograd because they are float64 autograd (the fallback) where h cancels.
    If h cannot run in high precision, the reference is float64 autograd with its measured noise.
    """
    try:
        d1, d2 = autograd_derivatives(div, ell)
        with torch.no_grad():
            log_omega = torch.log(ell.exp() * d2)
        pick = _suspects(div, ell, d1, d2, log_omega)
    except Exception:  # h that float64 autograd cannot differentiate: high precision everywhere
        d1 = d2 = log_omega = torch.full_like(ell, math.nan)
        pick = torch.ones_like(ell, dtype=torch.bool)
    pick[:: max(1, ell.numel() // PRECISE_POINTS)] = True
    pick[-1] = True
    try:
        ref = precise.reference(div.h, ell[pick])
    except precise.Unsupported as exc:
        return _float64_reference(div, ell, f"the high-precision reference cannot run h: {exc}")
    d1, d2, log_omega = d1.clone(), d2.clone(), log_omega.clone()
    d1[pick], d2[pick], log_omega[pick] = ref["d1"], ref["d2"], ref["log_omega"]
    usable_d1, usable_w = torch.ones_like(pick), torch.ones_like(pick)
    usable_d1[pick] = torch.isfinite(ref["d1"]) & (ref["err_d1"] < REFERENCE_TOL)
    usable_w[pick] = torch.isfinite(ref["err_w"]) & (ref["err_w"] < REFERENCE_TOL)
    bits = "/".join(str(p) for p in precise.PRECISIONS)
    method = (f"autograd of h in {bits}-bit arithmetic at {int(pick.sum())}/{ell.numel()} points (a regular "
              f"subgrid and wherever float64 autograd disagrees with the formulas), float64 autograd elsewhere")
    return Reference(d1, d2, log_omega, usable_d1, usable_w, method, True)


@lru_cache(maxsize=8)
def _cached(div: Divergence, quick: bool) -> Reference:
    return reference(div, grid(quick))


def _reference_for(div: Divergence, quick: bool) -> Reference:
    try:
        return _cached(div, quick)
    except TypeError:  # an unhashable divergence (a list-valued field): no caching
        return reference(div, grid(quick))


def _spans(ell: Tensor, mask: Tensor, most: int = 3) -> str:
    """The runs of consecutive True points as text: '[a, b], [c, d]' (at most ``most``, then 'and n more')."""
    runs, start = [], None
    for i, m in enumerate(mask.tolist() + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((float(ell[start]), float(ell[i - 1])))
            start = None
    text = ", ".join(f"[{a:.2f}, {b:.2f}]" if a != b else f"{a:.2f}" for a, b in runs[:most])
    return text + (f" and {len(runs) - most} more" if len(runs) > most else "")


def _usable(ell: Tensor, mask: Tensor, ref: Reference) -> str | None:
    """Why the claim cannot pass on the usable points ``mask``: None if every point is usable.

    A point the reference cannot settle is a point the claim did not verify, so it fails the claim;
    the message says where, and that it is the reference, not the closed form, that is in doubt.
    """
    if bool(mask.all()):
        return None
    fix = ("rewrite h with operations bregzoo.check.precise supports" if not ref.high_precision
           else "report this: the high-precision reference should not fail on a smooth h")
    return (f"could not verify {int((~mask).sum())}/{ell.numel()} points, l in {_spans(ell, ~mask)}: the reference "
            f"itself is uncertain there, not necessarily your formula; {fix}")


def _worst(err: Tensor, ell: Tensor) -> tuple[float, int]:
    """The largest error (NaN counts as infinite) and its index."""
    if err.numel() == 0:
        return math.inf, -1
    err = torch.where(torch.isnan(err), torch.full_like(err, math.inf), err)
    i = int(err.argmax())
    return float(err[i]), i


def _convexity_failure(ell: Tensor, ref: Reference) -> str | None:
    if not ref.high_precision:
        return None  # float64 autograd cannot tell h'' <= 0 from rounding; those points are skipped
    bad = torch.isnan(ref.log_omega) & ref.usable_w
    if bool(bad.any()):
        return (f"h''(r) <= 0 at l in {_spans(ell, bad)}: h is not strictly convex there, so no weight is right; "
                "fix h")
    return None


def _compare_weight(got: Tensor, ell: Tensor, ref: Reference, mask: Tensor) -> tuple[float, float, str]:
    """(max |log w - ref|, max relative error of omega, where and what) over the usable points."""
    idx = mask.nonzero().flatten()
    diff = (got.double() - ref.log_omega)[idx]
    rel = torch.where(torch.isfinite(diff), (diff.exp() - 1).abs(), torch.full_like(diff, math.inf))
    abs_err = float(torch.nan_to_num(diff.abs(), nan=math.inf).max()) if diff.numel() else math.inf
    rel_err, i = _worst(rel, ell[idx])
    if i < 0:
        return math.inf, math.inf, "no usable points"
    j = int(idx[i])
    return abs_err, rel_err, (f"worst at l = {float(ell[j]):.2f}: log_weight = {float(got[j]):.10g}, "
                              f"reference log(r h'') = {float(ref.log_omega[j]):.10g}")


def _advice(div: Divergence, float32: bool) -> str:
    if not div.has_closed_form_weight:
        return ("the autograd fallback is inaccurate there because h cancels in float64: give log_weight in "
                "closed form, or rewrite h")
    if float32:
        return ("training calls log_weight in float32: compute it in log space without forming r = exp(l) "
                "(softplus, logaddexp, log1p), or cast l to float64 inside and back")
    return "fix log_weight at that l (or h, if h is what is wrong), or drop log_weight to use the autograd fallback"


def _row(claim: str, div: Divergence, quantity: str, tol: float, abs_err: float, rel_err: float,
         parts: list[str | None], reason: str | None, advice: str) -> ClaimResult:
    passed = reason is None and rel_err < tol
    detail = "; ".join(p for p in (*parts, reason, None if passed else advice) if p)
    return ClaimResult(claim, div.spec(), quantity, abs_err, rel_err, tol, passed, detail)


def weight_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """weight-autograd: log_weight(l) in float64 vs log(r h''(r)) from h, on the whole range."""
    ell = grid(quick)
    ref = _reference_for(div, quick)
    reason = _convexity_failure(ell, ref) or _usable(ell, ref.usable_w, ref)
    got = div.log_weight(ell.clone()).double()
    mask = ref.usable_w & ~torch.isnan(ref.log_omega)
    abs_err, rel_err, where = _compare_weight(got, ell, ref, mask)
    source = "closed form" if div.has_closed_form_weight else "autograd fallback"
    return [_row("weight-autograd", div, f"log w(l) vs log(r h''(r)) by autograd, {RANGE}", WEIGHT_TOL,
                 abs_err, rel_err, [source, f"reference: {ref.method}", where], reason, _advice(div, False))]


def weight_float32_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """weight-float32: log_weight(l) called in float32 (as training calls it) stays within FLOAT32_TOL."""
    ell = grid(quick)
    ref = _reference_for(div, quick)
    reason = _convexity_failure(ell, ref) or _usable(ell, ref.usable_w, ref)
    got = div.log_weight(ell.float())
    if got.dtype != torch.float32 or got.shape != ell.shape:
        return [_row("weight-float32", div, f"log w(l) in float32 vs reference, {RANGE}", FLOAT32_TOL, math.inf,
                     math.inf, [f"log_weight returned {got.dtype} of shape {tuple(got.shape)} for float32 input of "
                                f"shape {tuple(ell.shape)}"], None,
                     "return a tensor of the input's dtype and shape")]
    mask = ref.usable_w & ~torch.isnan(ref.log_omega)
    abs_err, rel_err, where = _compare_weight(got, ell, ref, mask)
    advice = _advice(div, True)
    at = re.search(r"worst at l = (\S+):", where)
    if at and div.has_closed_form_weight:  # wrong in float64 as well? then precision is not the problem
        j = int((ell - float(at.group(1))).abs().argmin())
        off64 = float((div.log_weight(ell[j : j + 1].clone()).double() - ref.log_omega[j]).abs()[0])
        if not off64 < FLOAT32_TOL / 10:
            advice = "log_weight is wrong there in float64 too (see weight-autograd): fix the formula first"
    return [_row("weight-float32", div, f"log w(l) in float32 vs reference, {RANGE}", FLOAT32_TOL, abs_err,
                 rel_err, [where], reason, advice)]


def derivatives_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """derivs-autograd: dh and d2h vs autograd of h (h' relative to |h'| + omega, h'' relative)."""
    ell = grid(quick)
    ref = _reference_for(div, quick)
    r = ell.exp()
    reason1 = _usable(ell, ref.usable_d1, ref)
    m2 = ref.usable_w & torch.isfinite(ref.d2) & (ref.d2 != 0)
    reason2 = _usable(ell, m2 | ~(torch.isfinite(ref.d2) & (ref.d2 != 0)) & ref.usable_w, ref)
    d1 = div.dh(r.clone()).double()
    d2 = div.d2h(r.clone()).double()
    scale1 = ref.d1.abs() + r * ref.d2.abs()
    e1, i1 = _worst(((d1 - ref.d1) / scale1).abs()[ref.usable_d1], ell[ref.usable_d1])
    rel2 = ((d2 - ref.d2) / ref.d2).abs()[m2]
    e2, i2 = _worst(rel2, ell[m2])
    if e1 >= e2:
        j = int(ref.usable_d1.nonzero().flatten()[i1]) if i1 >= 0 else -1
        label, got, want, rel_err = "h'", d1, ref.d1, e1
    else:
        j = int(m2.nonzero().flatten()[i2])
        label, got, want, rel_err = "h''", d2, ref.d2, e2
    where = (f"worst {label} at l = {float(ell[j]):.2f}: {float(got[j]):.10g}, reference {float(want[j]):.10g}"
             if j >= 0 else "no usable points")
    # h'' spans e^-150..e^100 over the range, so its absolute error means nothing: report log-space.
    log_err = torch.nan_to_num(torch.log1p((d2 - ref.d2)[m2] / ref.d2[m2]).abs(), nan=math.inf)
    abs_err = max(e1, float(log_err.max()) if log_err.numel() else math.inf)
    return [_row("derivs-autograd", div, f"h'(r), h''(r) vs autograd of h (scaled), {RANGE}", WEIGHT_TOL,
                 abs_err, rel_err, [f"reference: {ref.method}", where], reason1 or reason2,
                 _derivative_advice(div))]


def _derivative_advice(div: Divergence) -> str:
    own = [n for n in ("dh", "d2h") if getattr(type(div), n) is not getattr(Divergence, n)]
    if own:
        return f"fix {'/'.join(own)} at that l (or drop them to use the autograd fallback)"
    return ("the autograd fallback for dh/d2h is inaccurate there because h cancels in float64: give dh and d2h "
            "in closed form, or rewrite h")
