"""The Gaussian-mixture sample-quality metrics: exact samples score as perfect, collapse and shifts are caught,
in 2-D and in 16 dimensions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bregzoo import BregzooError, create_dataset, create_metric, list_metrics
from bregzoo_zoo.metrics2d import reference_sample, wasserstein2

NAMES = {"mmd": "mmd2", "w2": "w2", "sliced-w2": "sw2", "mode-recall": "mode_recall", "precision": "precision",
         "nll": "nll"}
TASKS = ["gmm8", "gmm25", "gmm-unbalanced", "gmm-rare", "gmm-hd"]


def exact(task: str, n: int, seed: int = 7) -> torch.Tensor:
    return create_dataset(task).sample(n, torch.Generator().manual_seed(seed))


def collapsed(n: int = 1000) -> torch.Tensor:
    """Exact samples of gmm8's first component only: a sampler that kept one mode of eight."""
    ds = create_dataset("gmm8")
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return (ds.means[0] + ds.stds[0] * z).float()


def separated_entropy(task: str) -> float:
    """Entropy of a mixture whose components barely overlap (>= 12 std apart in all our tasks)."""
    ds = create_dataset(task)
    d = ds.data_shape[0]
    w = ds.weights
    return float(-(w * w.log()).sum() + (w * 0.5 * d * (2 * math.pi * math.e * ds.stds.square()).log()).sum())


def test_registered_and_return_their_keys():
    assert set(NAMES) <= set(list_metrics())
    x, ds = exact("gmm8", 200), create_dataset("gmm8")
    for name, key in NAMES.items():
        out = create_metric(name)(x, ds)
        assert key in out and math.isfinite(out[key]), (name, out)


@pytest.mark.parametrize("task", TASKS)
def test_exact_samples_score_as_perfect(task):
    x, ds = exact(task, 2000), create_dataset(task)
    assert create_metric("mode-recall")(x, ds) == {"mode_recall": 1.0, "modes_covered": len(ds.weights)}
    # A radius-3 ball holds P(chi2_2 <= 9) = 1 - exp(-4.5) of each 2-D component, and the default ball in d
    # dimensions holds the same mass; allow 4 binomial SEs.
    p0 = 1 - math.exp(-4.5)
    assert abs(create_metric("precision")(x, ds)["precision"] - p0) < 4 * math.sqrt(p0 * (1 - p0) / 2000)
    assert create_metric("nll")(x, ds)["nll"] == pytest.approx(separated_entropy(task), abs=0.1)
    assert abs(create_metric("mmd")(x, ds)["mmd2"]) < 3e-3


def test_collapse_onto_one_mode():
    ds, x = create_dataset("gmm8"), collapsed()
    assert create_metric("mode-recall")(x, ds) == {"mode_recall": 1 / 8, "modes_covered": 1}
    assert create_metric("precision")(x, ds)["precision"] > 0.97  # precision cannot see a lost mode
    assert create_metric("mmd")(x, ds)["mmd2"] > 0.3  # ~100x the noise of an exact sample
    good = create_metric("w2")(exact("gmm8", 500), ds)["w2"]
    assert create_metric("w2")(x[:500], ds)["w2"] > 2.0 > 3 * good  # exact samples: ~0.5 at n=500 (weight noise)
    point_mass = ds.means[3].float().expand(50, 2)
    assert create_metric("mode-recall")(point_mass, ds)["modes_covered"] == 1


def test_shift_adds_exactly_to_w2_squared():
    # For uniform sets the cross term depends only on the means: W2²(X+s, R) = W2²(X, R) + |s|² + 2 s.(mX - mR).
    ds, w2 = create_dataset("gmm8"), create_metric("w2")
    x, s = exact("gmm8", 400).double(), torch.tensor([0.6, -0.8], dtype=torch.float64)
    ref = reference_sample(ds, 400)
    base, moved = w2(x, ds)["w2"], w2(x + s, ds)["w2"]
    expected = base**2 + s.dot(s) + 2 * s.dot(x.mean(0) - ref.mean(0))
    assert moved**2 == pytest.approx(float(expected), abs=1e-9)
    assert moved > base + 0.5


clouds = st.integers(2, 24).flatmap(
    lambda n: st.tuples(st.integers(0, 2**31 - 1), st.just(n), st.floats(-3, 3), st.floats(-3, 3))
)


@settings(max_examples=40, deadline=None)
@given(clouds)
def test_w2_is_a_distance_on_point_clouds(case):
    seed, n, sx, sy = case
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 2, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)
    shift = torch.tensor([sx, sy], dtype=torch.float64)
    assert wasserstein2(x, x) == 0.0
    assert wasserstein2(x, x[torch.randperm(n, generator=g)]) == 0.0
    assert wasserstein2(x, y) == pytest.approx(wasserstein2(y, x), abs=1e-12)
    assert wasserstein2(x, x + shift) == pytest.approx(float(shift.norm()), abs=1e-9)


def test_w2_is_the_exact_optimum():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    best = min(float((x - y[list(p)]).square().sum(1).mean()) for p in itertools.permutations(range(6)))
    assert wasserstein2(x, y) == pytest.approx(math.sqrt(best), abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_two_samples_suffice_and_results_repeat(name):
    ds, metric = create_dataset("gmm8"), create_metric(name)
    for n in (2, 300):
        x = exact("gmm8", n).requires_grad_()
        first = metric(x, ds)
        assert first == metric(x, ds)
        assert all(math.isfinite(v) for v in first.values())


def test_subsampling_is_deterministic():
    ds, x = create_dataset("gmm8"), exact("gmm8", 500)
    mmd = create_metric("mmd", max_points=100)
    assert mmd(x, ds) == mmd(x.clone(), ds) != create_metric("mmd")(x, ds)


@pytest.mark.parametrize("name", NAMES)
def test_user_errors(name):
    metric = create_metric(name)
    with pytest.raises(BregzooError, match="Gaussian-mixture"):
        metric(torch.zeros(10, 2), object())
    with pytest.raises(BregzooError, match="at least 2 samples"):
        metric(torch.zeros(1, 2), create_dataset("gmm8"))
    with pytest.raises(BregzooError, match="shape"):
        metric(torch.zeros(10, 3), create_dataset("gmm8"))


def test_options_and_diverged_samples():
    ds = create_dataset("gmm8")
    assert create_metric("mmd:bandwidths=0.1/2").bandwidths == create_metric("mmd", bandwidths=[0.1, 2]).bandwidths
    assert math.isfinite(create_metric("mmd:bandwidths=0.5")(exact("gmm8", 100), ds)["mmd2"])
    for bad_bandwidths in [(0.0,), "wide", ()]:
        with pytest.raises(BregzooError, match="bandwidths"):
            create_metric("mmd", bandwidths=bad_bandwidths)
    with pytest.raises(BregzooError, match="no parameter"):
        create_metric("w2", n_points=10)
    bad = exact("gmm8", 50)
    bad[3] = float("nan")
    assert math.isnan(create_metric("w2")(bad, ds)["w2"])
    assert math.isnan(create_metric("mmd")(bad, ds)["mmd2"])
    assert create_metric("precision")(bad, ds)["precision"] <= 49 / 50


@pytest.mark.parametrize("task", TASKS)
def test_biased_mmd_floor_matches_its_expectation(task):
    # For exact samples E[MMD²_b] = (1/m + 1/n)(1 - E k(x, x')): a positive floor that a student's
    # value is read against. Over 8 seeds the mean must sit at that value, and the unbiased one at 0.
    ds, mmd = create_dataset(task), create_metric("mmd")
    # a new reference set each time too: the expectation is over both samples
    outs = [create_metric("mmd", seed=100 + seed)(exact(task, 500, seed), ds) for seed in range(8)]
    y = reference_sample(ds, 2000, seed=99)
    cross = mmd._kernel(y[:1000], y[1000:]).mean().item()
    expected = 2 / 500 * (1 - cross)
    mean_b = sum(o["mmd2_b"] for o in outs) / len(outs)
    assert all(o["mmd2_b"] > 0 for o in outs)
    assert mean_b == pytest.approx(expected, rel=0.25)
    assert abs(sum(o["mmd2"] for o in outs) / len(outs)) < 0.25 * expected
    one = ds.means[0].float() + ds.stds[0].float() * torch.randn(500, ds.data_shape[0], generator=torch.Generator().manual_seed(3))
    assert mmd(one, ds)["mmd2_b"] > 20 * expected  # a sampler that kept one mode (of 60% on gmm-unbalanced)


def test_mode_balls_hold_the_same_mass_in_any_dimension():
    """In 16-D a radius-3 ball holds 9% of a component: the default radius must follow the dimension."""
    ds = create_dataset("gmm-hd", dim=16)
    x = ds.sample(2000, torch.Generator().manual_seed(5))
    assert create_metric("precision", radius=3.0)(x, ds)["precision"] < 0.2
    assert create_metric("precision")(x, ds)["precision"] > 0.98
    assert create_metric("mode-recall")(x, ds)["modes_covered"] == 8
    assert create_dataset("gmm-hd", dim=16).means.shape == (8, 16)  # the layout is fixed by its seed
    assert torch.equal(create_dataset("gmm-hd", dim=16).means, ds.means)


def test_rare_modes_count_as_covered_only_with_their_share():
    """gmm-rare's 1% modes: exact samples keep them, a student that drops them loses 4 of 8."""
    ds = create_dataset("gmm-rare")
    x = exact("gmm-rare", 2000)
    assert create_metric("mode-recall")(x, ds)["modes_covered"] == 8
    heavy = x[(torch.cdist(x.double(), ds.means)[:, 1::2].min(1).values > 0.5)]
    assert create_metric("mode-recall")(heavy, ds)["modes_covered"] == 4


@pytest.mark.parametrize("task", ["gmm8", "gmm-hd"])
def test_sliced_w2_orders_exact_shift_and_collapse(task):
    ds = create_dataset(task)
    sw = create_metric("sliced-w2")
    x = exact(task, 2000)
    one = ds.means[0].float() + ds.stds[0].float() * torch.randn(2000, ds.data_shape[0], generator=torch.Generator().manual_seed(2))
    floor, shifted, collapsed_ = sw(x, ds)["sw2"], sw(x + 0.3, ds)["sw2"], sw(one, ds)["sw2"]
    assert floor < 0.15 and shifted > 2 * floor and collapsed_ > 2 * floor
    assert sw(x, ds) == sw(x, ds)  # fixed directions and reference: deterministic


def test_gmm_hd_refuses_bad_shapes():
    with pytest.raises(BregzooError, match="dim"):
        create_dataset("gmm-hd", dim=1)
    with pytest.raises(BregzooError, match="modes"):
        create_dataset("gmm-hd", modes=0)
