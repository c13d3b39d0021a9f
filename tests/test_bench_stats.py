"""The leaderboard's statistics: bootstrap intervals, paired tests against reverse-kl, Holm's correction."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bregzoo.bench.stats import bootstrap_ci, holm, paired_test, verdicts


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_seeds():
    rng = random.Random(0)
    few = [rng.gauss(1.0, 0.2) for _ in range(5)]
    many = [rng.gauss(1.0, 0.2) for _ in range(200)]
    lo, hi = bootstrap_ci(few)
    assert lo < sum(few) / 5 < hi
    lo2, hi2 = bootstrap_ci(many)
    assert lo2 < 1.0 < hi2 and (hi2 - lo2) < (hi - lo) / 3
    assert bootstrap_ci([3.0]) is None and bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)
    assert bootstrap_ci(few) == bootstrap_ci(few)  # seeded: the committed leaderboard regenerates identically


@given(st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=12))
def test_holm_is_monotone_and_between_raw_and_bonferroni(ps):
    adj = holm(ps)
    m = len(ps)
    for p, a in zip(ps, adj):
        assert p - 1e-15 <= a <= min(1.0, m * p) + 1e-15
    order = sorted(range(m), key=lambda i: ps[i])
    assert all(adj[order[i]] <= adj[order[i + 1]] + 1e-15 for i in range(m - 1))
    assert adj[order[0]] == pytest.approx(min(1.0, m * ps[order[0]]))


def test_holm_reference_values():
    # Holm (1979) step-down on four p-values, by hand: 4*0.005, 3*0.01, max(0.03, 2*0.03), max(0.06, 0.04)
    assert holm([0.04, 0.005, 0.03, 0.01]) == pytest.approx([0.06, 0.02, 0.06, 0.03])
    assert math.isnan(holm([0.01, math.nan])[1]) and holm([0.01, math.nan])[0] == pytest.approx(0.01)


def test_paired_test_is_scipys_t_test_on_the_log_when_positive():
    from scipy.stats import ttest_rel

    base = {0: 1.0, 1: 2.0, 2: 1.5, 3: 0.8, 4: 1.2}
    row = {s: v * f for (s, v), f in zip(base.items(), [2.1, 1.8, 2.3, 1.9, 2.0])}
    t = paired_test(row, base)
    assert t.scale == "log" and t.n == 5 and t.ratio == pytest.approx(2.0, rel=0.05)
    assert t.p == pytest.approx(ttest_rel([math.log(row[s]) for s in base], [math.log(v) for v in base.values()]).pvalue)
    # the seed spread (0.8-2.0) is larger than the difference, yet pairing finds it
    assert t.p < 1e-4
    raw = paired_test({0: -0.1, 1: 0.2, 2: 0.1}, {0: 0.0, 1: 0.1, 2: -0.2})
    assert raw.scale == "raw" and raw.n == 3


def test_paired_test_uses_only_common_finished_seeds():
    assert paired_test({0: 1.0, 1: 2.0}, {1: 1.0, 2: 1.0}) is None  # one common seed
    t = paired_test({0: 1.0, 1: 2.0, 2: float("nan"), 3: 4.0}, {0: 1.1, 1: 2.2, 2: 1.0, 3: 4.4})
    assert t.n == 3


def test_verdicts_call_a_difference_only_when_holm_says_so():
    rng = random.Random(1)
    base = {s: math.exp(rng.gauss(0, 0.5)) for s in range(5)}
    worse = {s: v * math.exp(0.7 + rng.gauss(0, 0.05)) for s, v in base.items()}  # ~2x, tight: significant
    better = {s: v * math.exp(-0.7 + rng.gauss(0, 0.05)) for s, v in base.items()}
    same = {s: v * math.exp(rng.gauss(0, 0.3)) for s, v in base.items()}  # no real difference
    tests = {name: paired_test(row, base) for name, row in [("worse", worse), ("better", better), ("same", same)]}
    tests["lonely"] = None
    out = verdicts(tests, higher_is_better=False)
    assert out["worse"].verdict == "worse" and out["better"].verdict == "better"
    assert out["same"].verdict == "no significant difference"
    assert out["lonely"] is None
    assert all(out[k].p_holm >= out[k].p for k in ("worse", "better", "same"))
    flipped = verdicts(tests, higher_is_better=True)  # e.g. precision: a higher value is the better one
    assert flipped["worse"].verdict == "better" and flipped["better"].verdict == "worse"


# -- in the leaderboard -----------------------------------------------------------------------------

def _record(task: str, divergence: str, seed: int, mmd2_b: float, exact: float = 1e-4) -> dict:
    config = {"train": {"steps": 10, "batch_size": 8, "fake_updates": 1}, "optim": {"lr_generator": 1e-3},
              "eval": {"samples": 100, "teacher_steps": 40, "teacher_sampler": "heun"}, "backbone": "mlp",
              "schedule": "edm", "teacher": "analytic-gmm"}
    return {"task": task, "divergence": divergence, "estimator": "classifier", "seed": seed, "group": "2d",
            "status": "ok", "seconds": 1.0, "steps": 10, "config": config, "student": {"mmd2_b": mmd2_b},
            "teacher": {"mmd2_b": 1.2 * exact}, "exact": {"mmd2_b": exact}, "provenance": {"dist": "bregzoo"}}


def test_leaderboard_marks_only_significant_differences_and_shows_the_floor():
    from bregzoo.bench.leaderboard import build, to_markdown
    from bregzoo.bench.suite import parse_suite

    suite = parse_suite({"suite": {"name": "t"}, "leaderboard": {"primary": "mmd2_b"},
                         "group": [{"name": "2d", "tasks": ["gmm8", "gmm-rare"], "divergences": ["*"]}]})
    rng = random.Random(3)
    recs = []
    for task in ("gmm8", "gmm-rare"):
        for seed in range(5):
            base = math.exp(rng.gauss(-6, 0.6))
            recs.append(_record(task, "reverse-kl", seed, base))
            recs.append(_record(task, "kl", seed, base * (2.0 if task == "gmm8" else 0.5) * math.exp(rng.gauss(0, 0.05))))
            recs.append(_record(task, "lsif", seed, base * math.exp(rng.gauss(0, 0.4))))
    board = build(suite, recs)
    rows = {r["name"]: r for r in board["tasks"]["gmm8"]["rows"]}
    assert rows["kl"]["vs_baseline"]["verdict"] == "worse" and rows["kl"]["vs_baseline"]["ratio"] == pytest.approx(2, rel=0.1)
    assert rows["lsif"]["vs_baseline"]["verdict"] == "no significant difference"
    assert rows["reverse-kl"]["vs_baseline"] is None
    assert rows["kl"]["ci"][0] < rows["kl"]["metrics"]["mmd2_b"]["mean"] < rows["kl"]["ci"][1]
    rare = {r["name"]: r for r in board["tasks"]["gmm-rare"]["rows"]}
    assert rare["kl"]["vs_baseline"]["verdict"] == "better"
    assert board["tasks"]["gmm8"]["floor"]["metrics"]["mmd2_b"]["mean"] == pytest.approx(1e-4)
    assert board["summary"]["rows"]["kl"]["better"] == 1 and board["summary"]["rows"]["kl"]["worse"] == 1
    md = to_markdown(board)
    assert "*exact samples (noise floor)*" in md and "## Summary across tasks" in md
    assert "**worse** (×2" in md and "**better** (×0.4" in md and "n.s. (" in md


def test_the_summary_orders_by_position_so_a_panel_task_counts_like_a_whole_zoo_task():
    """Ranked on two tasks of different sizes, #2 of 2 is last and #2 of 4 is a third of the way down."""
    from bregzoo.bench.leaderboard import summary

    def task(order):
        return {"rows": [{"name": n, "rank": i + 1, "vs_baseline": None} for i, n in enumerate(order)]}

    tasks = {"zoo": task(["a", "b", "c", "reverse-kl"]), "panel": task(["reverse-kl", "c"])}
    rows = summary(tasks)["rows"]
    assert rows["c"]["mean_rank"] == 2.5 and rows["c"]["mean_position"] == pytest.approx((2 / 3 + 1) / 2)
    assert rows["reverse-kl"]["mean_position"] == pytest.approx(0.5)  # last of 4, first of 2
    assert list(rows) == ["a", "b", "reverse-kl", "c"]  # by raw mean rank c (2.5) would come before reverse-kl (2.5, tie by name)


def test_the_leaderboard_plot_draws_the_teacher_and_the_noise_floor():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bregzoo.bench.plots import _bars

    row = {"name": "reverse-kl", "divergence": "reverse-kl", "metrics": {"mmd2_b": {"mean": 2e-3, "std": 1e-4}}}
    task = {"primary": "mmd2_b", "higher_is_better": False, "rows": [row],
            "teacher": {"steps": 40, "metrics": {"mmd2_b": {"mean": 1e-3}}},
            "floor": {"metrics": {"mmd2_b": {"mean": 7e-4}}}}
    fig, ax = plt.subplots()
    _bars(ax, "gmm8", task)
    lines = {ln.get_label(): ln.get_xdata()[0] for ln in ax.get_lines()}
    plt.close(fig)
    assert lines == {"teacher (40 steps)": 1e-3, "exact samples (noise floor)": 7e-4}
