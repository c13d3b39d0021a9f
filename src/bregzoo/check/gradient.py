"""Claims 3 and 6: the closed-form Di-Bregman gradient equals the true gradient of D_h.

For q_theta the law of x_t = alpha (mu + s eps) + sigma z and any fixed function g,
grad_theta E_q[g] = E[grad_x g(x_t) . dx_t/dtheta] (reparameterisation). With
L(theta) = int p h(q_theta/p) dx, grad L = int h'(r) grad_theta q = E[grad_x h'(r(x_t)) . dx_t/dtheta],
and grad_x h'(r) = h''(r) r grad_x log r = omega(r) (s_q - s_p). So grad L = E[omega (s_q - s_p) dx_t/dtheta].
The discriminator D = p/(p+q) gives r = (1-D)/D and grad_x r = -grad_x D / D^2, hence the same field is
-h''((1-D)/D) grad_x D / D^2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bregzoo.bregman import generator_weight, objective
from bregzoo.check.cases import DiffusedCase, density_cases, diffused_cases
from bregzoo.check.objective import objective_quadrature
from bregzoo.check.result import ClaimResult, Worst
from bregzoo.divergence import Divergence

GRADIENT_TOL = 1e-3
AFFINE_TOL = 1e-9


def objective_value(div: Divergence, case: DiffusedCase, theta: Tensor) -> Tensor:
    """D_h(r_t || 1) = int p_t B_h(q_t/p_t, 1) dx by quadrature, differentiable in theta."""
    logq = case.student_t(theta).log_prob(case.grid.points)
    return case.grid.integrate(case.logp.exp() * objective(div, logq - case.logp))


def autograd_gradient(div: Divergence, case: DiffusedCase, value=objective_value) -> Tensor:
    """grad_theta of ``value(div, case, theta)`` at theta0, by autograd through the quadrature."""
    theta = case.theta0().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(value(div, case, theta), theta)
    return grad


def dibregman_gradient(div: Divergence, case: DiffusedCase) -> Tensor:
    """E[omega(r) (s_q - s_p) . dx_t/dtheta] with the exact ratio and scores; omega from the engine."""
    omega = generator_weight(div, case.logq - case.logp)
    return case.push_forward(omega[:, None] * case.score_gap)


def discriminator_field(div: Divergence, case: DiffusedCase) -> Tensor:
    """-h''((1-D)/D) grad_x D / D^2 with D = p/(p+q) and grad_x D by autograd, (N, d).

    D and 1 - D are both taken from the logit log p - log q, so r = (1-D)/D keeps full precision
    where D is close to 1 (a trained discriminator outputs the logit too).
    """
    x = case.grid.points.clone().requires_grad_(True)
    q = case.student_t(case.theta0())
    with torch.enable_grad():
        logit = case.teacher_t.log_prob(x) - q.log_prob(x)
        (grad_d,) = torch.autograd.grad(torch.sigmoid(logit).sum(), x)
    d, one_minus_d = torch.sigmoid(logit.detach()), torch.sigmoid(-logit.detach())
    return -(div.d2h(one_minus_d / d) / d.square())[:, None] * grad_d


def gradient_claim(div: Divergence, quick: bool, dim: int) -> list[ClaimResult]:
    """gradient-1d / gradient-2d: closed-form Di-Bregman gradient vs autograd grad of D_h."""
    worst = Worst()
    for case in diffused_cases(dim, quick):
        worst.add(dibregman_gradient(div, case), autograd_gradient(div, case), case.name)
    return [worst.result(
        f"gradient-{dim}d", div.spec(), "E[w(r)(s_q-s_p)dx/dθ] vs autograd ∇θ D_h", GRADIENT_TOL,
        detail=f"θ = (μ, s), {', '.join(c.name for c in diffused_cases(dim, quick))}",
    )]


def discriminator_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """discriminator-form: the gradient through grad D equals the score-difference form."""
    worst = Worst()
    for dim in (1, 2):
        for case in diffused_cases(dim, quick)[:1]:
            via_d = case.push_forward(discriminator_field(div, case))
            worst.add(via_d, dibregman_gradient(div, case), f"{case.name} vs score form")
            worst.add(via_d, autograd_gradient(div, case), f"{case.name} vs autograd")
    return [worst.result(
        "discriminator-form", div.spec(), "E[-h''((1-D)/D)∇D/D² dx/dθ] vs score form", GRADIENT_TOL,
        detail="D = p/(p+q), r = (1-D)/D",
    )]


@dataclass(frozen=True)
class AffineShifted(Divergence):
    """h(r) + a + b r for a base generator; only h is given, so h', h'' and the weight use autograd."""

    base: Divergence
    a: float = 0.0
    b: float = 0.0
    name = "affine-shifted"

    def h(self, r: Tensor) -> Tensor:
        return self.base.h(r) + self.a + self.b * r


def affine_claim(div: Divergence, quick: bool) -> list[ClaimResult]:
    """affine-invariance: h + a + b r gives the same objective and gradient as h (any h)."""
    shifted = AffineShifted(base=div, a=1.7, b=-2.3)
    worst = Worst()
    for case in density_cases(quick):
        worst.add(objective_quadrature(shifted, case), objective_quadrature(div, case), f"D_h, {case.name}")
    for dim in (1, 2):
        case = diffused_cases(dim, quick)[0]
        worst.add(autograd_gradient(shifted, case), autograd_gradient(div, case), f"∇θ D_h, {case.name}")
        worst.add(dibregman_gradient(shifted, case), dibregman_gradient(div, case), f"Di-Bregman ∇, {case.name}")
    return [worst.result("affine-invariance", div.spec(), "D_h, ∇θ D_h of h + 1.7 - 2.3r vs h", AFFINE_TOL,
                         detail="the shifted generator's h', h'' and weight come from autograd")]

