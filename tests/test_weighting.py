"""The generator weight as training computes it: finite over the whole range the estimator can
produce, truncated and normalised as documented, ramped in from DMD, and recorded per divergence."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bregzoo import create_divergence, list_divergences
from bregzoo.config import RunConfig
from bregzoo.schedules import make_schedule
from bregzoo.divergence import Divergence
from bregzoo.train.weighting import GROWING, STABILISED, WeightNormaliser, constant_weight, growing_weight, resolve

SCHED = make_schedule("edm", t_min=0.02, t_max=3.0)
MODES = [("none", None), ("batch", None), ("batch", 10.0), ("ema-bins", None), ("ema-bins", 10.0)]


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


@pytest.mark.parametrize("name", list_divergences())
@pytest.mark.parametrize("mode,truncate", MODES)
def test_weights_finite_over_the_training_range(name: str, mode: str, truncate: float | None) -> None:
    # The estimator's log-ratio is whatever the network outputs: far beyond +-20 early in a run.
    div = create_divergence(name)
    w = WeightNormaliser(div, SCHED, clamp=None, mode=mode, truncate=truncate)
    ell = torch.cat([torch.linspace(-60, 60, 481), torch.tensor([0.0, 1e-8, -1e-8])])
    t = SCHED.sample_t(len(ell), generator=torch.Generator().manual_seed(0))
    omega = w(ell, t, identity)
    assert omega.dtype == torch.float32 and omega.shape == ell.shape
    assert (omega >= 0).all()
    if mode == "none":  # unnormalised: finite wherever omega itself fits in float32 (the defaults normalise)
        fits = div.log_weight(ell.double()) < math.log(torch.finfo(torch.float32).max)
        assert torch.isfinite(omega[fits]).all()
    else:
        assert torch.isfinite(omega).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=2, max_size=64), st.floats(1.5, 50))
def test_batch_truncation_caps_and_renormalises(ells: list[float], cap: float) -> None:
    w = WeightNormaliser(create_divergence("lsif"), SCHED, mode="batch", truncate=cap)
    ell = torch.tensor(ells)
    omega = w(ell, torch.full_like(ell, 1.0), identity).double()
    assert omega.mean() == pytest.approx(1.0, rel=1e-5)
    # Ionides' truncated weights: min(w / mean w, cap), renormalised (lsif: w = r, in float64 here)
    r = ell.double().exp()
    ref = (r / r.mean()).clamp(max=cap)
    assert torch.allclose(omega, ref / ref.mean(), rtol=1e-4)
    order = torch.argsort(ell)
    assert (omega[order].diff() >= -1e-6).all()  # still monotone in r for an increasing weight


def test_ema_bins_keep_noise_levels_apart() -> None:
    # A huge ratio at a low noise level must not shrink the weights at a high one (the bug of
    # normalising an r-weight over the whole batch, where small-t outliers dominate).
    w = WeightNormaliser(create_divergence("lsif"), SCHED, mode="ema-bins", truncate=10.0)
    t = torch.tensor([0.021] * 4 + [2.9] * 4)
    ell = torch.tensor([30.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.1])
    omega = w(ell, t, identity)
    assert torch.allclose(omega[4:], torch.ones(4), atol=1e-5)
    assert omega[0] <= 10.0 + 1e-4


def test_warmup_ramps_from_dmd() -> None:
    w = WeightNormaliser(create_divergence("lsif"), SCHED, mode="none", warmup=100)
    ell = torch.tensor([2.0])
    t = torch.ones(1)
    assert w(ell, t, identity, step=0).item() == pytest.approx(1.0)
    assert w(ell, t, identity, step=50).item() == pytest.approx(math.exp(1.0), rel=1e-6)
    assert w(ell, t, identity, step=100).item() == pytest.approx(math.exp(2.0), rel=1e-6)


def test_truncate_needs_normalisation() -> None:
    with pytest.raises(Exception, match="normalize"):
        RunConfig().replace(**{"weighting.truncate": 10.0, "weighting.normalize": "none"})


@pytest.mark.parametrize("name", list_divergences())
def test_auto_weighting_follows_the_weight_not_the_name(name: str) -> None:
    div = create_divergence(name)
    w = resolve(RunConfig().weighting, div)
    if constant_weight(div):  # DMD: nothing to tame, and the estimator is not even trained
        assert (w.normalize, w.truncate, w.warmup) == ("none", None, 0)
    else:
        cap, lr = (GROWING["truncate"], GROWING["estimator_lr_scale"]) if growing_weight(div) else (
            STABILISED["truncate"], 1.0)
        assert (w.normalize, w.truncate, w.warmup, w.estimator_lr_scale) == (
            STABILISED["normalize"], cap, STABILISED["warmup"], lr)


class PluginPearson(Divergence):
    """A third party's Pearson chi2 under its own name, given by h alone (the weight comes by autograd)."""

    name = "my-pearson"

    def h(self, r: torch.Tensor) -> torch.Tensor:
        return 0.5 * (r - 1) ** 2


@pytest.mark.parametrize("spec, growing", [("lsif", True), ("squared", True), ("power:alpha=1.0", True),
                                           ("power:alpha=2.0", True), ("power:alpha=0.5", False), ("kl", False),
                                           ("jeffreys", False), ("bkl", False), ("reverse-kl", False)])
def test_the_tighter_cap_goes_to_weights_that_grow_like_r(spec: str, growing: bool) -> None:
    div = create_divergence(spec)
    assert growing_weight(div) is growing
    w = resolve(RunConfig().weighting, div)
    assert w.truncate == (1.5 if growing else None if constant_weight(div) else 2.0)
    assert w.estimator_lr_scale == (3.0 if growing else 1.0)


def test_a_plugin_weight_that_grows_like_r_gets_the_tighter_cap_by_its_weight() -> None:
    w = resolve(RunConfig().weighting, PluginPearson())
    assert growing_weight(PluginPearson()) and (w.truncate, w.estimator_lr_scale) == (1.5, 3.0)
    explicit = resolve(RunConfig().replace(**{"weighting.truncate": 2.0, "weighting.estimator_lr_scale": 1.0})
                       .weighting, PluginPearson())
    assert (explicit.truncate, explicit.estimator_lr_scale) == (2.0, 1.0)  # explicit values still win
    with pytest.raises(Exception, match="estimator_lr_scale must be"):
        RunConfig().replace(**{"weighting.estimator_lr_scale": 0.0})


def test_explicit_weighting_wins_over_auto() -> None:
    lsif = create_divergence("lsif")
    explicit = RunConfig().replace(**{"weighting.normalize": "batch", "weighting.warmup": 0}).weighting
    assert (resolve(explicit, lsif).normalize, resolve(explicit, lsif).truncate, resolve(explicit, lsif).warmup) == (
        "batch", None, 0)
    off = RunConfig().replace(**{"weighting.truncate": math.inf}).weighting
    assert resolve(off, lsif).truncate is None and resolve(off, lsif).normalize == "ema-bins"
    plain = RunConfig().replace(**{"weighting.normalize": "none"}).weighting
    assert resolve(plain, lsif).truncate is None


def test_a_growing_weight_trains_with_the_cap_and_the_faster_estimator_and_config_json_says_so(tmp_path) -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from bregzoo.train import train
    from bregzoo.train.build import build
    from bregzoo.train.loop import Distiller

    tiny = {"backbone": "mlp:width=16,depth=1", "train.steps": 2, "train.batch_size": 16, "train.checkpoint_every": 1000,
            "eval.samples": 50, "eval.metrics": ["mode-recall"], "eval.final_metrics": ["mode-recall"],
            "eval.teacher_steps": 2}
    cfg = RunConfig().replace(divergence="lsif", out=str(tmp_path / "run"), **tiny)
    config = json.loads((train(cfg, check=False).run_dir / "config.json").read_text())
    assert (config["weighting"]["truncate"], config["weighting"]["estimator_lr_scale"]) == (1.5, 3.0)
    for spec, lr in (("lsif", 3e-3), ("kl", 1e-3)):
        try:
            d = Distiller(cfg.replace(divergence=spec), build(cfg.replace(divergence=spec)), Accelerator(cpu=True))
            assert [g["lr"] for g in d.e_opt.param_groups] == [pytest.approx(lr)]
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=2, max_size=64), st.floats(0.0, 1.0))
def test_defensive_mixture_keeps_a_floor_under_every_weight(ells: list[float], lam: float) -> None:
    # (1 - lambda) omega + lambda: the weight of h_lambda = (1 - lambda) h + lambda r log r, a Bregman generator
    # with the same minimiser, so no sample's gradient falls below lambda times DMD's.
    ell = torch.tensor(ells)
    t = torch.full_like(ell, 1.0)
    plain = WeightNormaliser(create_divergence("lsif"), SCHED, mode="batch", truncate=1.5)(ell, t, identity).double()
    mixed = WeightNormaliser(create_divergence("lsif"), SCHED, mode="batch", truncate=1.5, defensive=lam)(
        ell, t, identity).double()
    assert torch.allclose(mixed, (1 - lam) * plain + lam, rtol=1e-5, atol=1e-6)
    assert (mixed >= lam - 1e-6).all() and mixed.mean() == pytest.approx(1.0, rel=1e-5)


def test_defensive_leaves_a_broken_weight_broken_and_is_validated() -> None:
    for mode in ("batch", "ema-bins"):
        w = WeightNormaliser(create_divergence("lsif"), SCHED, mode=mode, truncate=1.5, defensive=0.5)
        assert torch.isnan(w(torch.tensor([0.0, math.nan]), torch.ones(2), identity)).any()  # the run still stops
    for bad in (-0.1, 1.5):
        with pytest.raises(Exception, match="weighting.defensive must be in"):
            RunConfig().replace(**{"weighting.defensive": bad})
