"""Numerical safety: a NaN or inf in a loss stops the run, keeps the last good checkpoint, and names the
step and the term.

The faults are injected through plugins registered for the test (bregzoo.testing's inline plugin), so the
real loop, the real registries and the real CLI are exercised. The finiteness of every registered
divergence's weight and estimator loss for log r in [-50, 50] in float32 and bfloat16 is a hypothesis
property in tests/test_divergences.py (test_log_weight_is_finite_in_low_precision,
test_estimator_loss_and_gradient_are_finite_in_low_precision); it is not repeated here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

from bregzoo import hookimpl, io
from bregzoo.divergence import Divergence
from bregzoo.estimator import BregmanRatioEstimator
from bregzoo.registry import Spec
from bregzoo_cli.app import get_app

CALLS = {"weight": 0, "estimator": 0}


@dataclass(frozen=True)
class GoesBad(Divergence):
    """reverse-kl whose weight turns into ``value`` (nan or inf) from the ``after``-th training step on.

    Only float32 calls count: the loop computes omega from float32 log-ratios once per step, while its
    probe of whether the weight is constant uses float64.
    """

    name = "goes-bad"
    after: int = 7
    value: float = math.nan

    def h(self, r: Tensor) -> Tensor:
        return torch.special.xlogy(r, r)

    def log_weight(self, ell: Tensor) -> Tensor:
        CALLS["weight"] += ell.dtype == torch.float32
        out = torch.zeros_like(ell)
        return out + float(self.value) if CALLS["weight"] >= self.after else out


@dataclass(frozen=True)
class BadEstimator(BregmanRatioEstimator):
    """The logistic estimator whose loss is NaN from the ``after``-th call on."""

    after: int = 5
    name: str = "bad-estimator"

    def loss(self, out_ref: Tensor, out_student: Tensor) -> Tensor:
        CALLS["estimator"] += 1
        value = super().loss(out_ref, out_student)
        return value * math.nan if CALLS["estimator"] >= self.after else value


class FaultyPlugin:
    @hookimpl
    def register_divergences(self):
        return [GoesBad]

    @hookimpl
    def register_ratio_estimators(self):
        from bregzoo import create_divergence

        return [Spec("bad-estimator", lambda after=5: BadEstimator(create_divergence("bkl"), after=after),
                     "NaN loss after some calls (test)")]


SMALL = ["--backbone", "mlp:width=16,depth=1", "--batch-size", "16", "--no-check", "-q", "--steps", "20",
         "--set", "train.checkpoint_every=2", "--set", "train.log_every=1000", "--set", "train.eval_every=1000",
         "--set", "train.fake_updates=1", "--set", "eval.samples=32", "--set", "eval.teacher_steps=2",
         "--set", 'eval.metrics=["mmd"]', "--set", 'eval.final_metrics=["mmd"]']


@pytest.mark.parametrize("args, step, term", [
    (["--divergence", "goes-bad:after=7"], 7, "loss_dm"),
    (["--divergence", "goes-bad:after=4,value=inf"], 4, "loss_dm"),
    (["--estimator", "bad-estimator:after=5", "--divergence", "lsif"], 5, "loss_est"),  # lsif: the estimator is used
], ids=["nan-weight", "inf-weight", "nan-estimator-loss"])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
        tmp_path, bregzoo_inline_plugin, args, step, term):
    bregzoo_inline_plugin(FaultyPlugin(), name="faulty")
    CALLS.update(weight=0, estimator=0)
    out = tmp_path / "run"
    result = CliRunner().invoke(get_app(), ["train", "--out", str(out), *SMALL, *args])

    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in result.output, result.stderr
    assert f"step {step}" in line and term in line, line  # names the step and the term
    good = step - 1 - (step - 1) % 2  # the last checkpoint written before the bad step
    ckpts = sorted((out / "checkpoints").glob("step-*"))
    assert ckpts and ckpts[-1].name == f"step-{good:07d}", ckpts
    assert str(ckpts[-1].name) in line  # and points at it
    for f in ckpts[-1].glob("*.safetensors"):
        assert all(torch.isfinite(t).all() for t in io.load_file(f).values() if t.is_floating_point()), f
    assert not (out / "generator.safetensors").exists()  # nothing non-finite was shipped
