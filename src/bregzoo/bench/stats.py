"""Statistics for the leaderboard: a bootstrap confidence interval per row, and a paired test of each
divergence against the baseline on the same seeds, corrected for multiple comparisons (Holm).

A cell of divergence A and a cell of reverse-kl with the same seed share the initial weights, the noise
stream and the evaluation noise, so their metrics are *paired*: the seed-to-seed spread (often larger
than the difference between divergences) cancels in A − reverse-kl. The test is Student's paired t-test
on the log of the metric when every value is positive (MMD²_b, FID, W2: ratios such as "2x the floor"
are the natural scale, and the log makes them additive), and on the raw values otherwise (the unbiased
MMD², which straddles 0). With n seeds it has n − 1 degrees of freedom. A sign-flip permutation test
cannot reject anything at 5 seeds (its smallest two-sided p-value is 2/2⁵ = 0.0625), which is why the
t-test is used; its normality assumption is the price, and is stated with the results.

The p-values of one task's comparisons (one per divergence) are adjusted by Holm's step-down method
(Holm 1979), which controls the family-wise error rate with no assumption on their dependence. A row is
called better or worse than the baseline only when its adjusted p-value is below ``alpha``; otherwise
there is no significant difference, whatever its mean says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

ALPHA = 0.05
LEVEL = 0.95
N_BOOT = 10_000


def bootstrap_ci(values: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of the mean (scipy.stats.bootstrap); None for < 2 values.

    >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> 1.0 < lo < 3.0 < hi < 5.0
    True
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(vals) < 2:
        return None
    if max(vals) == min(vals):
        return vals[0], vals[0]
    import numpy as np
    from scipy.stats import bootstrap

    res = bootstrap((np.asarray(vals),), np.mean, confidence_level=level, n_resamples=n_boot,
                    method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of one row against the baseline on the seeds both finished."""

    n: int  # seeds in common
    scale: str  # "log" or "raw"
    mean_diff: float  # mean of (row - baseline) on that scale; on "log", exp() of it is the geometric ratio
    p: float  # two-sided p-value, unadjusted (NaN when it cannot be computed)
    p_holm: float = math.nan  # after Holm's correction across the task's rows
    verdict: str = "n/a"  # "better", "worse", "no significant difference", or "n/a"

    @property
    def ratio(self) -> float | None:
        """Geometric mean of row / baseline over the paired seeds (log scale only)."""
        return math.exp(self.mean_diff) if self.scale == "log" and math.isfinite(self.mean_diff) else None


def paired_test(row: dict[int, float], base: dict[int, float]) -> Paired | None:
    """Paired t-test of ``row`` against ``base`` (seed -> metric) on their common seeds; None under 2 pairs."""
    seeds = sorted(s for s in set(row) & set(base)
                   if row[s] is not None and base[s] is not None and math.isfinite(row[s]) and math.isfinite(base[s]))
    if len(seeds) < 2:
        return None
    a, b = [float(row[s]) for s in seeds], [float(base[s]) for s in seeds]
    scale = "log" if min(a + b) > 0 else "raw"
    if scale == "log":
        a, b = [math.log(v) for v in a], [math.log(v) for v in b]
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    if max(diffs) - min(diffs) <= 1e-12 * max(1.0, abs(mean)):  # no spread: t is undefined (or infinite)
        return Paired(len(seeds), scale, mean, 1.0 if mean == 0 else 0.0)
    from scipy.stats import ttest_rel

    return Paired(len(seeds), scale, mean, float(ttest_rel(a, b).pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN and is not counted).

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m, out, running = len(idx), [math.nan] * len(pvalues), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))  # monotone: never below an earlier step
        out[i] = running
    return out


def verdicts(tests: dict[str, Paired | None], higher_is_better: bool, alpha: float = ALPHA) -> dict[str, Paired | None]:
    """Holm-adjust one task's tests (row name -> Paired) and label each row against the baseline."""
    names = [k for k, t in tests.items() if t is not None]
    adjusted = holm([tests[k].p for k in names])
    out: dict[str, Paired | None] = dict.fromkeys(tests)
    for name, p_adj in zip(names, adjusted):
        t = tests[name]
        if math.isnan(p_adj) or p_adj >= alpha:
            verdict = "no significant difference"
        else:
            verdict = "better" if (t.mean_diff > 0) == higher_is_better else "worse"
        out[name] = Paired(t.n, t.scale, t.mean_diff, t.p, p_adj, verdict)
    return out
