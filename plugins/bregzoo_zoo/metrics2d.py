"""Sample-quality metrics for the Gaussian-mixture tasks: MMD², exact W2, sliced W2, mode recall,
precision, NLL. They are exact in any dimension (the tasks' exact sampler and density are known).

Each metric is a small frozen dataclass; ``create_metric("w2")(samples, dataset)`` returns a dict of
floats. Samples are detached, moved to the CPU and flattened to float64 points (n, d). Everything is
deterministic: the reference sample and any subsample come from fixed seeds, never the global RNG.

Mode balls: a sample belongs to mode k when it lies within ``radius`` std_k of mean_k. In 2-D the
default radius is 3, and the ball holds P(chi2_2 <= 9) = 1 - e^-4.5 = 0.9889 of a component's mass
(the 0.9973 of the "3-sigma rule" is the 1-D figure); that is what ``precision`` reads for a perfect
sampler. A ball of radius 3 holds only 9% of a component in 16 dimensions (a Gaussian's mass sits
near radius std·√d), so in d dimensions the default radius is the one that holds the same 0.9889:
sqrt(chi2_d quantile): 3 in 2-D, 5.63 in 16-D, 7.28 in 32-D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from einops import rearrange
from torch import Tensor

from bregzoo import BregzooError

REFERENCE_SEED = 12345  # distinct from the usual seed 0, so a training sample is never the reference


def _points(samples: Tensor, dataset: object) -> Tensor:
    """Samples as CPU float64 points (n, d), checked against the task's data shape."""
    x = rearrange(samples.detach().to("cpu", torch.float64), "n ... -> n (...)")
    d = math.prod(getattr(dataset, "data_shape", (x.shape[1],)))
    if x.shape[0] < 2 or x.shape[1] != d:
        raise BregzooError(
            f"metrics need at least 2 samples of shape {tuple(getattr(dataset, 'data_shape', (d,)))}; "
            f"got a tensor of shape {tuple(samples.shape)}"
        )
    return x


def _need(dataset: object, attrs: tuple[str, ...], metric: str) -> None:
    missing = [a for a in attrs if not hasattr(dataset, a)]
    if missing:
        raise BregzooError(
            f"metric {metric!r} needs a Gaussian-mixture task such as gmm8 (with {', '.join(attrs)}); "
            f"{type(dataset).__name__} lacks {', '.join(missing)}"
        )


def _subsample(x: Tensor, max_points: int, seed: int) -> Tensor:
    """At most ``max_points`` rows, chosen by a seeded permutation (samples may arrive sorted)."""
    if len(x) <= max_points:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_points]]


def reference_sample(dataset: object, n: int, seed: int = REFERENCE_SEED) -> Tensor:
    """``n`` exact samples of the task from a fixed seed, as CPU float64 points (n, d)."""
    sample = dataset.sample(n, generator=torch.Generator().manual_seed(seed))
    return rearrange(sample.to("cpu", torch.float64), "n ... -> n (...)")


def _mixture(dataset: object) -> tuple[Tensor, Tensor, Tensor]:
    """The task's means (K, d), stds (K,) and weights (K,) as CPU float64."""
    return tuple(getattr(dataset, a).detach().to("cpu", torch.float64) for a in ("means", "stds", "weights"))


def _sqdist(a: Tensor, b: Tensor) -> Tensor:
    """(n, m) squared distances; the direct (not matmul) mode keeps them exact enough for OT."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square()


BALL_MASS = 1.0 - math.exp(-4.5)  # the mass of a 2-D Gaussian within 3 std


def ball_radius(dim: int, radius: float | None = None) -> float:
    """``radius`` if given, else the radius (in std) of the ball that holds BALL_MASS of a Gaussian in ``dim`` dims.

    >>> ball_radius(2), round(ball_radius(16), 2)
    (3.0, 5.63)
    """
    if radius is not None:
        return float(radius)
    if dim == 2:
        return 3.0  # chi2_2's quantile is -2 log(1 - p) = 9 exactly; scipy's is 9 + 1e-14
    from scipy.stats import chi2  # heavy import kept out of module import

    return math.sqrt(float(chi2.ppf(BALL_MASS, dim)))


def _in_ball(x: Tensor, means: Tensor, stds: Tensor, radius: float) -> Tensor:
    """(n, K) mask: sample i lies within ``radius`` std_k of mean_k."""
    return _sqdist(x, means) <= (radius * stds).square()


def wasserstein2(x: Tensor, y: Tensor) -> float:
    """Exact W2 between two equal-size uniform point sets (n, d), by optimal assignment.

    Between uniform measures on n points each, some optimal coupling is a permutation (Birkhoff),
    so the assignment problem solves OT exactly.

    >>> wasserstein2(torch.zeros(3, 2), torch.ones(3, 2))  # a translation by (1, 1)
    1.4142135623730951
    """
    from scipy.optimize import linear_sum_assignment  # heavy import kept out of module import

    if x.shape != y.shape:
        raise BregzooError(f"wasserstein2 needs two point sets of equal shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.detach().to("cpu", torch.float64), y.detach().to("cpu", torch.float64)
    if not (x.isfinite().all() and y.isfinite().all()):
        return math.nan  # a diverged sampler: report it, do not crash the training loop
    cost = _sqdist(x, y).numpy()
    rows, cols = linear_sum_assignment(cost)
    return math.sqrt(max(float(cost[rows, cols].mean()), 0.0))


def _bandwidths(value: object) -> tuple[float, ...]:
    """Positive bandwidths from a sequence, one number, or "0.1/0.5/2" (a CLI spec cannot spell a tuple)."""
    items = value.split("/") if isinstance(value, str) else [value] if isinstance(value, (int, float)) else value
    try:
        bw = tuple(float(b) for b in items)
    except (TypeError, ValueError):
        bw = ()
    if not bw or min(bw) <= 0:
        raise BregzooError(f"mmd bandwidths must be positive numbers, e.g. (0.1, 0.5) or '0.1/0.5'; got {value!r}")
    return bw


@dataclass(frozen=True)
class MMD:
    """MMD² against a fixed-seed reference sample, with a mixture of RBF kernels.

    Returns ``mmd2`` (unbiased, mean 0 for exact samples) and ``mmd2_b`` (the biased V-statistic,
    whose value for exact samples is a positive noise floor: read students as a ratio to it).

    k(x, y) = mean over b in ``bandwidths`` of exp(-|x - y|² / (2 b²)), with the bandwidths in data
    units and fixed (nothing data-dependent), so values compare across runs and samplers. The defaults
    span the tasks' component stds (0.08-0.15) up to their layout scale (2). More than ``max_points``
    samples are subsampled by a seeded permutation; the reference has as many points unless ``n_ref``.
    """

    better: ClassVar[dict[str, str]] = {"mmd2": "lower", "mmd2_b": "lower"}  # how to read each output (CLI tables)

    bandwidths: tuple[float, ...] | float | str = (0.1, 0.2, 0.5, 1.0, 2.0)
    n_ref: int | None = None
    seed: int = REFERENCE_SEED
    max_points: int = 4096

    def __post_init__(self) -> None:
        object.__setattr__(self, "bandwidths", _bandwidths(self.bandwidths))

    def _kernel(self, a: Tensor, b: Tensor) -> Tensor:
        d2 = _sqdist(a, b)
        return sum(d2.mul(-0.5 / bw**2).exp_() for bw in self.bandwidths) / len(self.bandwidths)

    def __call__(self, samples: Tensor, dataset: object) -> dict[str, float]:
        _need(dataset, ("sample",), "mmd")
        x = _subsample(_points(samples, dataset), self.max_points, self.seed)
        y = reference_sample(dataset, self.n_ref or len(x), self.seed)
        m, n = len(x), len(y)
        sxx, syy, kxy = self._kernel(x, x).sum(), self._kernel(y, y).sum(), self._kernel(x, y).mean()
        # Unbiased: drop the diagonals (k(x, x) = 1), Gretton et al. 2012, eq. 3; it is 0 in
        # expectation for exact samples, so it can dip below 0 and no ratio to it means anything.
        unbiased = (sxx - m) / (m * (m - 1)) + (syy - n) / (n * (n - 1)) - 2 * kxy
        # Biased (V-statistic, eq. 5): >= 0, and for exact samples about (1/m + 1/n)(1 - E k(x, x')),
        # a positive noise floor that a student's value can be read against as a ratio.
        biased = sxx / m**2 + syy / n**2 - 2 * kxy
        return {"mmd2": float(unbiased), "mmd2_b": float(biased)}


@dataclass(frozen=True)
class W2:
    """Exact 2-Wasserstein distance to a fixed-seed reference sample of equal size (≤ ``max_points``).

    Even exact samples score above 0 (gmm8: about 0.26 at 2,000 points, 0.5 at 500), mostly because
    two finite samples put different counts on each mode; so compare samplers at equal n.
    """

    better: ClassVar[dict[str, str]] = {"w2": "lower"}  # how to read each output (CLI tables)

    seed: int = REFERENCE_SEED
    max_points: int = 2000

    def __call__(self, samples: Tensor, dataset: object) -> dict[str, float]:
        _need(dataset, ("sample",), "w2")
        x = _subsample(_points(samples, dataset), self.max_points, self.seed)
        return {"w2": wasserstein2(x, reference_sample(dataset, len(x), self.seed))}


@dataclass(frozen=True)
class SlicedW2:
    """Sliced 2-Wasserstein distance to a fixed-seed reference sample of equal size (Rabin et al. 2011).

    SW2² = mean over ``projections`` random unit directions θ of W2²(θ·x, θ·y), each 1-D W2 exact by
    sorting. Its cost is linear in the dimension, and its sample complexity does not grow with it, so it
    stays a usable distance on the high-dimensional mixtures where exact OT needs many more points.
    The directions come from ``seed``, so every sampler is read along the same ones. Exact samples
    score above 0 (finite-sample noise): read a student against the task's exact-sample row.
    """

    better: ClassVar[dict[str, str]] = {"sw2": "lower"}  # how to read each output (CLI tables)

    projections: int = 256
    seed: int = REFERENCE_SEED
    max_points: int = 4096

    def __call__(self, samples: Tensor, dataset: object) -> dict[str, float]:
        _need(dataset, ("sample",), "sliced-w2")
        if self.projections < 1:
            raise BregzooError(f"sliced-w2: projections must be >= 1, got {self.projections}")
        x = _subsample(_points(samples, dataset), self.max_points, self.seed)
        if not x.isfinite().all():
            return {"sw2": math.nan}  # a diverged sampler: report it, do not crash the training loop
        y = reference_sample(dataset, len(x), self.seed)
        theta = torch.randn(x.shape[1], self.projections, generator=torch.Generator().manual_seed(self.seed),
                            dtype=torch.float64)
        theta = theta / theta.norm(dim=0, keepdim=True)
        px, py = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values
        return {"sw2": float((px - py).square().mean().sqrt())}


@dataclass(frozen=True)
class ModeRecall:
    """Fraction of modes k that get at least ``min_share`` of their expected count within the mode ball
    (3 std_k in 2-D; see the module docstring for d dimensions).

    The expected count of an exact sampler is n w_k P(chi2_d <= radius²). A fifth of it separates a
    dropped mode from sampling noise: an exact sampler falls below it with probability < 1e-3 once
    the expected count reaches about 12 (Binomial tail), while a mode-seeking student that starves
    a mode below a fifth of its mass counts as having lost it. Any mode needs at least one sample.
    """

    better: ClassVar[dict[str, str]] = {"mode_recall": "higher", "modes_covered": "higher"}  # how to read each output (CLI tables)

    min_share: float = 0.2
    radius: float | None = None  # None: the dimension's default (3 in 2-D)

    def __call__(self, samples: Tensor, dataset: object) -> dict[str, float]:
        _need(dataset, ("means", "stds", "weights"), "mode-recall")
        x = _points(samples, dataset)
        means, stds, weights = _mixture(dataset)
        radius = ball_radius(x.shape[1], self.radius)
        counts = _in_ball(x, means, stds, radius).sum(0)
        inside = torch.special.gammainc(torch.tensor(x.shape[1] / 2), torch.tensor(radius**2 / 2))
        need = (self.min_share * len(x) * weights * inside).clamp(min=1.0)
        covered = int((counts >= need).sum())
        return {"mode_recall": covered / len(weights), "modes_covered": covered}


@dataclass(frozen=True)
class Precision:
    """Fraction of samples within the ball of some mode k (``radius`` std_k; by default the ball that
    holds 0.9889 of a component in any dimension, so exact samples read about 0.99 whatever d is)."""

    better: ClassVar[dict[str, str]] = {"precision": "higher"}  # how to read each output (CLI tables)

    radius: float | None = None  # None: the dimension's default (3 in 2-D)

    def __call__(self, samples: Tensor, dataset: object) -> dict[str, float]:
        _need(dataset, ("means", "stds", "weights"), "precision")
        x = _points(samples, dataset)
        means, stds, _ = _mixture(dataset)
        radius = ball_radius(x.shape[1], self.radius)
        return {"precision": float(_in_ball(x, means, stds, radius).any(1).double().mean())}


@dataclass(frozen=True)
class NLL:
    """Mean negative log-likelihood of the samples under the true mixture (nats per sample).

    Exact samples give the mixture's entropy; a student that collapses onto modes can score lower.
    """

    better: ClassVar[dict[str, str]] = {"nll": "exact"}  # how to read each output (CLI tables)

    def __call__(self, samples: Tensor, dataset: object) -> dict[str, float]:
        _need(dataset, ("means", "stds", "weights", "log_prob"), "nll")
        x = _points(samples, dataset)
        device = dataset.means.device  # the task may have been moved along with the model
        return {"nll": float(-dataset.log_prob(x.to(device)).double().mean())}
