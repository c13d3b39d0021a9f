"""Every registered divergence, checked for free: convexity, derivatives, weights and the estimator loss.

The names are read from the registry at collection time, so an installed plugin's divergences are
checked too (with their default parameters).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from bregzoo import BregzooError, Divergence, create_divergence, list_divergences
from bregzoo.bregman import LOG_RATIO_LIMIT, bregman_divergence, generator_weight, ratio_matching_loss
from bregzoo.divergence import _derivative

NAMES = list_divergences()
LOW_PRECISION = [torch.float32, torch.bfloat16]
# A grid of log-ratios, away from 0 so that B_h(r, 1) ~ h''(1)(r-1)^2/2 stays far above rounding.
GRID = torch.cat([torch.linspace(-8, -0.05, 40), torch.linspace(0.05, 8, 40)]).double()
ell_lists = st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=16)


def make(name: str) -> Divergence:
    try:
        return create_divergence(name)
    except BregzooError as exc:  # a plugin divergence whose parameters have no defaults
        pytest.skip(f"{name} cannot be built with default parameters: {exc}")


def test_registry_holds_the_builtin_zoo():
    assert len(NAMES) >= 12
    assert {"reverse-kl", "ukl", "kl", "lsif", "squared", "bkl", "js", "hellinger", "jeffreys", "power"} <= set(NAMES)


# -- convexity and derivatives (float64) ---------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_bregman_to_one_is_positive_and_zero_only_at_one(name):
    div = make(name)
    r = GRID.exp()
    b = bregman_divergence(div, r, torch.ones((), dtype=torch.float64))
    assert torch.isfinite(b).all()
    assert (b > 0).all(), f"{name}: B_h(r, 1) <= 0 at r = {r[b <= 0].tolist()}"
    at_one = bregman_divergence(div, torch.ones(3, dtype=torch.float64), torch.ones((), dtype=torch.float64))
    assert at_one.abs().max() < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_and_weight_agree_with_autograd_of_h(name):
    div = make(name)
    r = GRID.exp()
    dh_auto = _derivative(div.h, r, 1)
    d2h_auto = _derivative(div.h, r, 2)
    torch.testing.assert_close(div.dh(r), dh_auto, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(div.d2h(r), d2h_auto, rtol=1e-6, atol=1e-12)
    # log omega = log(r h''(r)): compare in log space, where the weights of the zoo live.
    torch.testing.assert_close(div.log_weight(GRID), torch.log(r * d2h_auto), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_objective_is_the_f_divergence(name):
    """E_p[B_h(r, 1)] = E_p[h(r)] - h(1) because E_p[r] = 1: checked on a discrete p and q."""
    div = make(name)
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(50, generator=gen, dtype=torch.float64) + 0.1
    q = torch.rand(50, generator=gen, dtype=torch.float64) + 0.1
    p, q = p / p.sum(), q / q.sum()
    r = q / p
    bregman = (p * bregman_divergence(div, r, torch.ones((), dtype=torch.float64))).sum()
    f_div = (p * div.h(r)).sum() - div.h(torch.ones(1, dtype=torch.float64))
    torch.testing.assert_close(bregman, f_div.squeeze(), rtol=1e-9, atol=1e-12)


# -- low precision: weights and the estimator loss stay finite ------------------------------------
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(ells=ell_lists)
def test_log_weight_is_finite_in_low_precision(name, dtype, ells):
    div = make(name)
    ell = torch.tensor(ells, dtype=dtype)
    log_w = div.log_weight(ell)
    assert log_w.dtype == dtype and log_w.shape == ell.shape
    assert torch.isfinite(log_w).all(), f"{name}: log_weight({ells}) = {log_w.tolist()}"
    assert torch.isfinite(generator_weight(div, ell, clamp=10.0, normalize=True)).all()


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(ell_ref=ell_lists, ell_stu=ell_lists)
def test_estimator_loss_and_gradient_are_finite_in_low_precision(name, dtype, ell_ref, ell_stu):
    div = make(name)
    ref = torch.tensor(ell_ref, dtype=dtype, requires_grad=True)
    stu = torch.tensor(ell_stu, dtype=dtype, requires_grad=True)
    ref_terms, stu_terms = ratio_matching_loss(div, ref, stu)
    assert ref_terms.dtype == dtype and stu_terms.dtype == dtype
    loss = ref_terms.mean() + stu_terms.mean()
    assert torch.isfinite(loss), f"{name}: BR_h({ell_ref}, {ell_stu}) = {loss}"
    loss.backward()
    assert torch.isfinite(ref.grad).all() and torch.isfinite(stu.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_estimator_loss_gradient_is_the_weight(name):
    """d/dl of the BR_h terms is r*omega(r) at reference and -omega(r) at student samples (float64)."""
    div = make(name)
    ell = torch.linspace(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT, 41, dtype=torch.float64, requires_grad=True)
    ref_terms, stu_terms = ratio_matching_loss(div, ell, ell)
    (g_ref,) = torch.autograd.grad(ref_terms.sum(), ell)
    (g_stu,) = torch.autograd.grad(stu_terms.sum(), ell)
    r = ell.detach().exp()
    w = div.log_weight(ell.detach()).exp()
    # h'(r) r - h(r) cancels where h grows linearly (neyman, bkl at large r): allow rounding of the
    # summands' size, r |h'(r)| + r^2 h''(r), on top of the relative tolerance.
    rounding = 16 * torch.finfo(torch.float64).eps * (r * div.dh(r).abs() + r * r * div.d2h(r))
    assert ((g_ref - r * w).abs() <= 1e-6 * r * w + rounding).all(), f"{name}: {g_ref} vs {r * w}"
    torch.testing.assert_close(g_stu, -w, rtol=1e-6, atol=0)


def test_ratio_clamp_keeps_the_value_and_passes_the_gradient():
    div = create_divergence("lsif")
    ell = torch.tensor([LOG_RATIO_LIMIT + 30.0], requires_grad=True)
    ref_terms, _ = ratio_matching_loss(div, ell, ell.detach())
    at_limit, _ = ratio_matching_loss(div, torch.tensor([LOG_RATIO_LIMIT]), torch.zeros(1))
    torch.testing.assert_close(ref_terms.detach(), at_limit)
    ref_terms.sum().backward()
    assert ell.grad.item() > 0  # straight through: the estimator is still pushed back down


@pytest.mark.parametrize("name", NAMES)
def test_normalised_weights_have_batch_mean_one_even_where_exp_overflows(name):
    div = make(name)
    # l is clamped to +-50 (WEIGHT_LOG_RATIO_LIMIT) first; omega = e^100 (neyman at l = -50) is still inf in float32
    ell = torch.tensor([-200.0, -3.0, 0.0, 2.0, 200.0])
    w = generator_weight(div, ell, normalize=True)
    assert torch.isfinite(w).all() and (w >= 0).all()
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    clamped = generator_weight(div, ell, clamp=3.0)
    torch.testing.assert_close(clamped, div.log_weight(ell.clamp(-3, 3)).exp())


# -- named cases of the estimator loss -------------------------------------------------------------
ELL = torch.linspace(-6, 6, 25, dtype=torch.float64)


def _br(name: str, ell_ref: Tensor, ell_stu: Tensor) -> Tensor:
    ref_terms, stu_terms = ratio_matching_loss(create_divergence(name), ell_ref, ell_stu)
    return ref_terms.mean() + stu_terms.mean()


def test_br_bkl_is_logistic_regression():
    ref, stu = ELL, ELL.flip(0) * 0.7
    expected = torch.nn.functional.softplus(ref).mean() + torch.nn.functional.softplus(-stu).mean()
    torch.testing.assert_close(_br("bkl", ref, stu), expected)


def test_br_lsif_is_ulsif_plus_a_half_and_squared_is_ulsif():
    ref, stu = ELL, ELL.flip(0) * 0.7
    ulsif = 0.5 * ref.exp().square().mean() - stu.exp().mean()
    torch.testing.assert_close(_br("squared", ref, stu), ulsif)
    torch.testing.assert_close(_br("lsif", ref, stu), ulsif + 0.5)


def test_br_ukl_is_unnormalised_kliep():
    ref, stu = ELL, ELL.flip(0) * 0.7
    torch.testing.assert_close(_br("ukl", ref, stu), ref.exp().mean() - stu.mean())


# -- affine shifts and the power family -----------------------------------------------------------
@pytest.mark.parametrize("a, b", [("lsif", "squared"), ("reverse-kl", "ukl")])
def test_affine_shifted_generators_are_the_same_divergence(a, b):
    da, db = create_divergence(a), create_divergence(b)
    r = GRID.exp()
    one = torch.ones((), dtype=torch.float64)
    assert torch.equal(da.log_weight(GRID), db.log_weight(GRID))
    torch.testing.assert_close(da.d2h(r), db.d2h(r))
    torch.testing.assert_close(bregman_divergence(da, r, one), bregman_divergence(db, r, one))
    # The estimator losses differ by a constant, so they train the same estimator.
    ell = GRID.clone().requires_grad_(True)
    grads = []
    for div in (da, db):
        ref_terms, stu_terms = ratio_matching_loss(div, ell, ell * 0.5)
        grads.append(torch.autograd.grad(ref_terms.mean() + stu_terms.mean(), ell)[0])
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("alpha, other, scale", [(-0.5, "hellinger", 1.0), (1.0, "squared", 2.0)])
def test_power_family_contains_known_members(alpha, other, scale):
    """power(-1/2) has Hellinger's weight; power(1) has twice squared's."""
    power, div = create_divergence("power", alpha=alpha), create_divergence(other)
    torch.testing.assert_close(power.log_weight(GRID), div.log_weight(GRID) + math.log(scale))


@pytest.mark.parametrize("alpha", [1e-4, 1e-8, 1e-12, -1e-8])
def test_power_approaches_reverse_kl_as_alpha_goes_to_zero(alpha):
    power, rkl = create_divergence("power", alpha=alpha), create_divergence("reverse-kl")
    ell = torch.linspace(-5, 5, 21, dtype=torch.float64)
    r = ell.exp()
    tol = abs(alpha) * float(r.max() * ell.max() ** 2) + 1e-13  # |h_a - h_0| ~ |alpha| r (log r)^2 / 2
    torch.testing.assert_close(power.log_weight(ell), rkl.log_weight(ell), rtol=0, atol=10 * abs(alpha))
    torch.testing.assert_close(power.h(r), rkl.h(r), rtol=0, atol=tol)
    torch.testing.assert_close(power.dh(r), rkl.dh(r), rtol=0, atol=tol)
    torch.testing.assert_close(power.d2h(r), rkl.d2h(r), rtol=0, atol=tol)


def test_power_at_zero_is_reverse_kl():
    power, rkl = create_divergence("power", alpha=0), create_divergence("reverse-kl")
    r = GRID.exp()
    assert torch.equal(power.log_weight(GRID), rkl.log_weight(GRID))
    torch.testing.assert_close(power.h(r), rkl.h(r))
    torch.testing.assert_close(power.dh(r), rkl.dh(r))


@pytest.mark.parametrize("alpha", [-1, -1.0, -2.5, float("nan"), float("inf"), "abc", None])
def test_power_rejects_alpha_outside_its_domain(alpha):
    with pytest.raises(BregzooError, match="alpha must be"):
        create_divergence("power", alpha=alpha)


@pytest.mark.parametrize("spec", ["power:alpha=-1", "power:alpha=nan", "power:alpha=-3"])
def test_power_rejects_bad_alpha_from_the_command_line_spelling(spec):
    with pytest.raises(BregzooError, match="alpha must be"):
        create_divergence(spec)


# -- precision at extreme ratios ------------------------------------------------------------------
@pytest.mark.parametrize("name, dh", [
    ("bkl", lambda ell: -torch.nn.functional.softplus(-ell)),
    ("js", lambda ell: 0.5 * (math.log(2.0) - torch.nn.functional.softplus(-ell))),
])
def test_logistic_generators_keep_h_prime_precise_at_large_ratios_in_float32(name, dh):
    """h'(r) ~ -1/r at large r: log r - log(1+r) would cancel to 0 in float32."""
    ell = torch.tensor([5.0, 10.0, 18.0, 30.0])
    got = create_divergence(name).dh(ell.exp())
    torch.testing.assert_close(got, dh(ell.double()).float(), rtol=1e-5, atol=0)


# -- a divergence that gives only h ---------------------------------------------------------------
@dataclass(frozen=True)
class HOnly(Divergence):
    """Power(1/2) written as h alone: omega = 1.5 sqrt(r), so the fallback has a known answer."""

    name = "h-only"

    def h(self, r: Tensor) -> Tensor:
        return 2 * (r.pow(1.5) - r)


def test_h_only_divergence_gets_derivatives_and_weight_by_autograd():
    div, ref = HOnly(), create_divergence("power", alpha=0.5)
    assert not div.has_closed_form_weight and ref.has_closed_form_weight
    r = GRID.exp()
    torch.testing.assert_close(div.dh(r), ref.dh(r))
    torch.testing.assert_close(div.d2h(r), ref.d2h(r))
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        got = div.log_weight(GRID.to(dtype))
        assert got.dtype == dtype
        expected = ref.log_weight(GRID.to(dtype).double()).to(dtype)  # float64 inside, then rounded
        torch.testing.assert_close(got, expected)


def test_h_only_divergence_trains_an_estimator_through_ratio_matching_loss():
    """Gradients flow from BR_h through the autograd h'(r) back to the network's weights."""
    torch.manual_seed(0)
    x_ref, x_stu = torch.randn(32, 3), torch.randn(32, 3) + 0.5
    net0, grads = nn.Linear(3, 1), []
    for div in (HOnly(), create_divergence("power", alpha=0.5)):
        net = copy.deepcopy(net0)
        ref_terms, stu_terms = ratio_matching_loss(div, net(x_ref).squeeze(1), net(x_stu).squeeze(1))
        (ref_terms.mean() + stu_terms.mean()).backward()
        grads.append(net.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)
