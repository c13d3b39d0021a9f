"""bregzoo.testing, the helper for plugin authors: inline registration, and checks that catch broken plugins."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from bregzoo import Divergence, PluginError, RatioEstimator, hookimpl, list_divergences
from bregzoo.plugins import get_host
from bregzoo.testing import (
    check_divergence,
    check_estimator,
    divergence_properties,
    estimator_properties,
    register_inline_plugin,
    registered,
)


@dataclass(frozen=True)
class Cosh(Divergence):
    """h = cosh(log r) - 1 = (r + 1/r)/2 - 1: h'' = r^-3, omega = r^-2 (Neyman chi2 / 2)."""

    name = "test-cosh"

    def h(self, r: Tensor) -> Tensor:
        return (r + 1 / r) / 2 - 1


@dataclass(frozen=True)
class WrongWeight(Cosh):
    """The weight of reverse-kl glued to Cosh's h: a closed form that disagrees with autograd."""

    name = "test-wrong-weight"

    def log_weight(self, ell: Tensor) -> Tensor:
        return torch.zeros_like(ell)


@dataclass(frozen=True)
class Concave(Divergence):
    name = "test-concave"

    def h(self, r: Tensor) -> Tensor:
        return r.log()


class NanLoss(RatioEstimator):
    """Overflows for large outputs, like an exp(out)^2 loss computed in float32 without care."""

    name = "test-nan-loss"

    def loss_terms(self, out_ref: Tensor, out_student: Tensor) -> tuple[Tensor, Tensor]:
        return 0.5 * out_ref.exp().square(), -out_student.exp()


class Plugin:
    @hookimpl
    def register_divergences(self):
        return [Cosh]


def test_context_manager_registers_for_the_block_only():
    with register_inline_plugin(Plugin(), name="test-inline") as info:
        assert "test-cosh" in list_divergences()
        assert info.dist == "(inline)" and info.provides == {"divergence": ["test-cosh"]}
    assert "test-cosh" not in list_divergences()
    assert "test-inline" not in get_host().infos


def test_context_manager_cleans_up_after_an_error_in_the_block():
    with pytest.raises(RuntimeError, match="boom"), register_inline_plugin(Plugin(), name="test-inline"):
        raise RuntimeError("boom")
    assert "test-cosh" not in list_divergences()


def test_a_name_clash_fails_and_leaves_no_trace():
    @dataclass(frozen=True)
    class Clash(Cosh):
        name = "kl"

    class ClashPlugin:
        @hookimpl
        def register_divergences(self):
            return [Cosh, Clash]

    with pytest.raises(PluginError, match="duplicate divergence name 'kl'"):
        with register_inline_plugin(ClashPlugin(), name="test-clash"):
            pass
    assert "test-cosh" not in list_divergences() and "test-clash" not in get_host().infos


def test_fixture_form(bregzoo_inline_plugin):
    bregzoo_inline_plugin(Plugin(), name="test-fixture")
    assert "test-cosh" in list_divergences() and registered("divergence", "test-*") == ["test-cosh"]


def test_fixture_form_cleaned_up_after_the_previous_test():
    assert "test-cosh" not in list_divergences()


def test_a_correct_h_only_divergence_passes_its_properties():
    outcomes = divergence_properties(Cosh())  # dh, d2h and log_weight fall back to autograd
    assert all(o.passed for o in outcomes), "\n".join(map(str, outcomes))


def test_a_wrong_closed_form_weight_fails_with_its_counterexample():
    with pytest.raises(AssertionError, match=r"property failed: log_weight = log\(r autograd h''\): at log r = -8: error 16"):
        check_divergence(WrongWeight(), claims=False)


def test_a_concave_generator_fails_the_bregman_property_first():
    with pytest.raises(AssertionError, match=r"B_h\(r,1\) > 0"):
        check_divergence(Concave(), claims=False)


def test_an_estimator_whose_loss_overflows_fails():
    outcomes = estimator_properties(NanLoss())
    assert not outcomes[0].passed and "not finite" in outcomes[0].detail
    with pytest.raises(AssertionError, match="not finite for torch.float32 outputs of scale"):
        check_estimator(NanLoss(), claims=False)


def test_report_is_readable():
    report = check_divergence(Cosh(), claims=False)
    text = str(report)
    assert text.splitlines()[0] == f"divergence test-cosh: {len(report.outcomes)}/{len(report.outcomes)} passed"
    assert all(line.startswith("  PASS  property") for line in text.splitlines()[1:])
    assert math.isfinite(max(o.worst for o in report.outcomes))


def test_claims_of_bregzoo_check_are_included():
    report = check_divergence(Cosh(), quick=True)
    kinds = {o.kind for o in report.outcomes}
    assert kinds == {"property", "claim"}


def test_claims_catch_the_wrong_weight_too():
    with pytest.raises(AssertionError) as info:
        check_divergence(WrongWeight(), quick=True)
    assert any(line.startswith("  FAIL  claim") for line in str(info.value).splitlines())
