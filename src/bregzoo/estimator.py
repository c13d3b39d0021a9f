"""Density-ratio estimator losses. A network outputs ell ~ log(q/p); the loss trains it.

Reference samples come from the teacher's marginal p_t, student samples from q_{theta,t}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bregzoo.bregman import ratio_matching_loss
from bregzoo.divergence import Divergence

if TYPE_CHECKING:  # torch is imported by the losses, on first use: registering an estimator does not need it
    from torch import Tensor


class RatioEstimator:
    """A loss for a ratio network, plus the map from the network's output to log r = log(q/p)."""

    name: str = ""

    def loss_terms(self, out_ref: Tensor, out_student: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample loss terms at reference and at student samples; the loss is the sum of means."""
        raise NotImplementedError

    def loss(self, out_ref: Tensor, out_student: Tensor) -> Tensor:
        """The scalar estimator loss."""
        ref, stu = self.loss_terms(out_ref, out_student)
        return ref.mean() + stu.mean()

    def log_ratio(self, out: Tensor) -> Tensor:
        """log(q/p) from the network output. Plain Bregman estimators output it directly."""
        return out

    def params(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class BregmanRatioEstimator(RatioEstimator):
    """BR_h ratio matching with any registered generator h (Sugiyama, Suzuki & Kanamori 2012)."""

    h: Divergence
    name: str = "bregman"

    def loss_terms(self, out_ref: Tensor, out_student: Tensor) -> tuple[Tensor, Tensor]:
        return ratio_matching_loss(self.h, out_ref, out_student)

    def params(self) -> dict[str, Any]:
        return {"h": self.h.spec()}
