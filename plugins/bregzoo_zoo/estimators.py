"""The built-in ratio estimators: BR_h matching with a named or any registered h."""

from __future__ import annotations

from bregzoo import BregmanRatioEstimator, create_divergence


def classifier() -> BregmanRatioEstimator:
    """Logistic regression: E_p[softplus(l)] + E_q[softplus(-l)] (h = bkl)."""
    return BregmanRatioEstimator(create_divergence("bkl"), name="classifier")


def lsif() -> BregmanRatioEstimator:
    """uLSIF: E_p[r^2]/2 - E_q[r] (+1/2 from the affine part of h = lsif)."""
    return BregmanRatioEstimator(create_divergence("lsif"), name="lsif")


def kliep() -> BregmanRatioEstimator:
    """Unnormalised KLIEP: E_p[r] - E_q[l] (h = ukl)."""
    return BregmanRatioEstimator(create_divergence("ukl"), name="kliep")


def bregman(h: str = "bkl") -> BregmanRatioEstimator:
    """BR_h matching with any registered divergence as h, e.g. 'bregman:h=hellinger'."""
    return BregmanRatioEstimator(create_divergence(h), name="bregman")
