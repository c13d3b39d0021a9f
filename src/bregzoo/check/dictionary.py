"""The unification dictionary: what each named generator h is, written independently of the zoo.

Each row says which f-divergence D_h(r||1) is, which distillation method and which density-ratio
estimator it reproduces, and gives the textbook definition as an integrand of the two densities
(and a closed form for two Gaussians where one exists). ``bregzoo check`` compares each row against
the registered divergence of that name. Rows whose name is not registered are simply not checked, so
the core still works with the zoo disabled. This module is the specification; the zoo is the code
under test. r = q/p (student over teacher); f-distill uses u = p/q = 1/r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from bregzoo.check.quadrature import GaussMix, gaussian_kl, gaussian_power_integral
from bregzoo.divergence import Divergence

LOG2 = math.log(2.0)
Integrand = Callable[[Divergence, Tensor, Tensor], Tensor]  # (div, log q, log p) -> values to integrate
ClosedForm = Callable[[Divergence, GaussMix, GaussMix], float]  # (div, q, p) -> D_h for two Gaussians


@dataclass(frozen=True)
class Entry:
    """One named generator: what D_h(r||1) is, who uses it, and its definition from the densities."""

    divergence: str
    method: str
    estimator: str
    direct: Integrand
    closed_form: ClosedForm | None = None


def _alpha(div: Divergence) -> float:
    return float(div.params().get("alpha", 0.0))


def _kl_qp(div, lq, lp):
    return lq.exp() * (lq - lp)


def _kl_pq(div, lq, lp):
    return lp.exp() * (lp - lq)


def _js2(div, lq, lp):  # 2 JS = KL(p||m) + KL(q||m), m = (p+q)/2
    lm = torch.logaddexp(lq, lp) - LOG2
    return lp.exp() * (lp - lm) + lq.exp() * (lq - lm)


def _power(div, lq, lp):
    a = _alpha(div)
    if a == 0:
        return _kl_qp(div, lq, lp)
    return ((1 + a) * lq - a * lp).exp().sub(lq.exp()) / a


def _power_closed(div, q, p):
    a = _alpha(div)
    return gaussian_kl(q, p) if a == 0 else (gaussian_power_integral(q, p, 1 + a) - 1) / a


ENTRIES: dict[str, Entry] = {
    "reverse-kl": Entry("KL(q‖p)", "DMD, Diff-Instruct, VSD (ω ≡ 1)", "—",
                        _kl_qp, lambda d, q, p: gaussian_kl(q, p)),
    "ukl": Entry("KL(q‖p)", "KLIEP's generator; DMD gradient (ω ≡ 1)", "unnormalised KLIEP (`kliep`)",
                 _kl_qp, lambda d, q, p: gaussian_kl(q, p)),
    "kl": Entry("KL(p‖q)", "forward KL (mode-covering)", "—",
                _kl_pq, lambda d, q, p: gaussian_kl(p, q)),
    "lsif": Entry("½ χ²(q‖p) = ½∫(q−p)²/p", "Pearson χ²(q‖p); uLSIF's generator", "uLSIF (`lsif`; BR = uLSIF + ½)",
                  lambda d, lq, lp: 0.5 * (lq.exp() - lp.exp()).square() * (-lp).exp(),
                  lambda d, q, p: 0.5 * (gaussian_power_integral(q, p, 2.0) - 1)),
    "squared": Entry("½ χ²(q‖p)", "lsif + affine term", "uLSIF exactly (BR_squared = uLSIF)",
                     lambda d, lq, lp: 0.5 * (lq.exp() - lp.exp()).square() * (-lp).exp(),
                     lambda d, q, p: 0.5 * (gaussian_power_integral(q, p, 2.0) - 1)),
    "bkl": Entry("2 JS(q‖p)", "GAN / classifier: ω = D = p/(p+q)",
                 "logistic regression (`classifier`)", _js2),
    "js": Entry("JS(q‖p)", "Jensen-Shannon", "—",
                lambda d, lq, lp: 0.5 * _js2(d, lq, lp)),
    "hellinger": Entry("H²(q,p) = ∫(√q−√p)²", "squared Hellinger", "—",
                       lambda d, lq, lp: ((0.5 * lq).exp() - (0.5 * lp).exp()).square(),
                       lambda d, q, p: 2 - 2 * gaussian_power_integral(q, p, 0.5)),
    "jeffreys": Entry("KL(q‖p) + KL(p‖q)", "Jeffreys: KL + reverse KL", "—",
                      lambda d, lq, lp: (lq.exp() - lp.exp()) * (lq - lp),
                      lambda d, q, p: gaussian_kl(q, p) + gaussian_kl(p, q)),
    "softened-rkl": Entry("2 KL((p+q)/2 ‖ p)", "softened reverse KL", "—",
                          lambda d, lq, lp: (lq.exp() + lp.exp()) * (torch.logaddexp(lq, lp) - LOG2 - lp)),
    "neyman": Entry("χ²(p‖q) = ∫(q−p)²/q", "Neyman χ²(q‖p)", "—",
                    lambda d, lq, lp: (lq.exp() - lp.exp()).square() * (-lq).exp(),
                    lambda d, q, p: gaussian_power_integral(q, p, -1.0) - 1),
    "power": Entry("(∫q^(1+α) p^(−α) − 1)/α", "Basu power family; α→0 reverse-kl, α=1 squared", "—",
                   _power, _power_closed),
}

# Generators that differ by an affine term (times a constant): D_b = scale * D_a, omega_b = scale * omega_a.
AFFINE_PAIRS: dict[str, tuple[str, float]] = {"reverse-kl": ("ukl", 1.0), "lsif": ("squared", 1.0), "js": ("bkl", 2.0)}

# Generators whose weight is identically 1: the DMD / Diff-Instruct gradient.
DMD = ("reverse-kl", "ukl")


@dataclass(frozen=True)
class FDistillWeight:
    """One of f-distill's divergences: D_f(p||q) = int q f(p/q), u = p/q, weight u^2 f''(u).

    Our h is the perspective h(r) = c r f(1/r) up to an affine term, so omega(r) = c w(1/r).
    """

    name: str
    f: Callable[[Tensor], Tensor]
    f_formula: str
    weight: Callable[[Tensor], Tensor]
    weight_formula: str
    ours: str
    factor: float


FDISTILL: tuple[FDistillWeight, ...] = (
    FDistillWeight("reverse-KL", lambda u: -u.log(), "−log u", torch.ones_like, "1", "reverse-kl", 1.0),
    FDistillWeight("softened RKL", lambda u: (u + 1) * (torch.log1p(u) - LOG2 - u.log()), "(u+1) log((u+1)/(2u))",
                   lambda u: 1 / (1 + u), "1/(1+u)", "softened-rkl", 1.0),
    FDistillWeight("JS", lambda u: torch.special.xlogy(u, u) - (u + 1) * (torch.log1p(u) - LOG2),
                   "u log u − (u+1) log((u+1)/2)", lambda u: u / (1 + u), "u/(1+u)", "js", 0.5),
    FDistillWeight("JS", lambda u: torch.special.xlogy(u, u) - (u + 1) * (torch.log1p(u) - LOG2),
                   "u log u − (u+1) log((u+1)/2)", lambda u: u / (1 + u), "u/(1+u)", "bkl", 1.0),
    FDistillWeight("squared Hellinger", lambda u: (u.sqrt() - 1).square(), "(√u − 1)²",
                   lambda u: 0.5 * u.sqrt(), "½ √u", "hellinger", 1.0),
    FDistillWeight("forward-KL", lambda u: torch.special.xlogy(u, u), "u log u", lambda u: u.clone(), "u", "kl", 1.0),
    FDistillWeight("Jeffreys", lambda u: (u - 1) * u.log(), "(u−1) log u", lambda u: 1 + u, "1 + u", "jeffreys", 1.0),
    FDistillWeight("Pearson χ²", lambda u: (u - 1).square(), "(u−1)²", lambda u: 2 * u.square(), "2u²", "neyman", 1.0),
    FDistillWeight("Neyman χ²", lambda u: (1 - u).square() / u, "(1−u)²/u", lambda u: 2 / u, "2/u", "lsif", 0.5),
)


@dataclass(frozen=True)
class NamedObjective:
    """A density-ratio estimator's textbook loss in terms of l = log r at reference (p) and student (q) samples."""

    title: str
    formula: str
    loss: Callable[[Tensor, Tensor], Tensor]  # (l at p samples, l at q samples) -> scalar
    offset: float = 0.0  # BR_h = loss + offset


def _logistic(lp: Tensor, lq: Tensor) -> Tensor:
    return torch.nn.functional.softplus(lp).mean() + torch.nn.functional.softplus(-lq).mean()


def _ulsif(lp: Tensor, lq: Tensor) -> Tensor:
    return 0.5 * (2 * lp).exp().mean() - lq.exp().mean()


def _kliep(lp: Tensor, lq: Tensor) -> Tensor:
    return lp.exp().mean() - lq.mean()


LOGISTIC = NamedObjective("logistic regression", "E_p[softplus(l)] + E_q[softplus(−l)]", _logistic)
ULSIF = NamedObjective("uLSIF", "½E_p[r²] − E_q[r]", _ulsif)
ULSIF_PLUS_HALF = NamedObjective("uLSIF", "½E_p[r²] − E_q[r]; the ½ is lsif's affine part", _ulsif, 0.5)
KLIEP = NamedObjective("unnormalised KLIEP", "E_p[r] − E_q[l]", _kliep)

# BR_h for these generators is a named estimator's loss (DESIGN.md, "Density-ratio estimation").
BR_NAMED: dict[str, NamedObjective] = {"bkl": LOGISTIC, "lsif": ULSIF_PLUS_HALF, "squared": ULSIF, "ukl": KLIEP}
# Built-in estimator names and the textbook loss each must equal.
ESTIMATOR_NAMED: dict[str, NamedObjective] = {"classifier": LOGISTIC, "lsif": ULSIF_PLUS_HALF, "kliep": KLIEP}


def dictionary_markdown(pattern: str = "*") -> str:
    """The dictionary table (markdown) for the registered rows matching ``pattern``.

    h(r) and omega(r) come from the registered classes, the rest from ``ENTRIES``, so the table in
    docs/unification.md is checked against the code by a test (``bregzoo check --dictionary`` prints it).
    """
    import fnmatch

    from bregzoo.api import create_divergence, list_divergences

    registered = set(list_divergences(pattern))
    names = [n for n in ENTRIES if n in registered and fnmatch.fnmatchcase(n, pattern)]

    fd = {w.ours: w for w in FDISTILL}
    def weight_text(w: FDistillWeight) -> str:
        return f"'{w.name}': " + (w.weight_formula if w.factor == 1 else f"{w.factor:g}·({w.weight_formula})")

    rows = [
        "| name | h(r) | ω(r) = r h''(r) | D_h(r‖1) | f-distill (u = 1/r) | method | estimator (BR_h) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        div = create_divergence(name)
        e, w = ENTRIES.get(name), fd.get(name)
        fd_text = weight_text(w) if w else "—"
        rows.append(
            f"| {name} | {div.h_formula or '(h only)'} | {div.weight_formula or '(autograd)'} | "
            f"{e.divergence if e else '—'} | {fd_text} | {e.method if e else '—'} | {e.estimator if e else '—'} |"
        )
    return "\n".join(rows) + "\n"
