"""Taming the generator weight omega = r h''(r) before it multiplies the DMD gradient.

Three options, composable with clamping of l = log r (``bregzoo.bregman.generator_weight``):
- ``batch``: divide omega by its mean over the global batch (all processes);
- ``ema-bins``: divide omega by an EMA of its mean in its time bin, as f-distill does (Xu et al.
  2025, "One-step diffusion models with f-divergence distribution matching", Sec. 4): the weight's
  scale varies strongly with the noise level, and a per-bin running mean removes that without
  letting one batch set the scale;
- ``none``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from bregzoo.bregman import generator_weight
from bregzoo.divergence import Divergence
from bregzoo.schedules import Schedule

Gather = Callable[[Tensor], Tensor]


class WeightNormaliser:
    """omega from l, clamped and normalised; holds the per-bin EMA state (saved in checkpoints)."""

    def __init__(self, div: Divergence, schedule: Schedule, clamp: float | None = None, mode: str = "none",
                 bins: int = 10, decay: float = 0.9) -> None:
        self.div, self.schedule, self.clamp, self.mode = div, schedule, clamp, mode
        self.bins, self.decay = bins, decay
        self.bin_mean = torch.ones(bins, dtype=torch.float64)
        self.bin_seen = torch.zeros(bins, dtype=torch.bool)

    def bin_of(self, t: Tensor) -> Tensor:
        """Bin index of each time, by the position of log(sigma/alpha) in the schedule's range."""
        ends = torch.tensor([self.schedule.t_min, self.schedule.t_max], dtype=torch.float64)
        lo, hi = self.schedule.s(ends).log().tolist()
        u = (self.schedule.s(t.detach().double().cpu()).log() - lo) / (hi - lo)
        return (u * self.bins).floor().long().clamp(0, self.bins - 1)

    def __call__(self, ell: Tensor, t: Tensor, gather: Gather) -> Tensor:
        """omega (B,) for log-ratios ``ell`` (B,) at times ``t``; ``gather`` joins all processes."""
        omega = generator_weight(self.div, ell.float(), clamp=self.clamp).double()
        if self.mode == "batch":
            return (omega / gather(omega).mean()).float()
        if self.mode == "ema-bins":
            self._update(gather(omega).cpu(), gather(t.double()).cpu())
            return (omega / self.bin_mean.to(omega.device)[self.bin_of(t).to(omega.device)]).float()
        return omega.float()

    def _update(self, omega: Tensor, t: Tensor) -> None:
        b = self.bin_of(t)
        total = torch.zeros(self.bins, dtype=torch.float64).index_add_(0, b, omega)
        count = torch.zeros(self.bins, dtype=torch.float64).index_add_(0, b, torch.ones_like(omega))
        hit = count > 0
        mean = total[hit] / count[hit]
        first = hit & ~self.bin_seen
        self.bin_mean[hit] = torch.where(first[hit], mean, self.decay * self.bin_mean[hit] + (1 - self.decay) * mean)
        self.bin_seen |= hit

    def state_dict(self) -> dict[str, Tensor]:
        return {"bin_mean": self.bin_mean.clone(), "bin_seen": self.bin_seen.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.bin_mean = state["bin_mean"].to(torch.float64).clone()
        self.bin_seen = state["bin_seen"].to(torch.bool).clone()
