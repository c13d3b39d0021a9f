"""An exponential moving average of the generator's weights (the student that is evaluated and shipped)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class EMA:
    """A frozen copy of ``model`` updated as shadow <- d shadow + (1 - d) model after each step.

    The decay ramps up as min(decay, (1 + step) / (10 + step)) so early steps are not dominated by
    the random initialisation (the warm-up used by EDM and most diffusion codebases).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the shadow towards ``model`` after optimizer step number ``step`` (0-based)."""
        d = min(self.decay, (1 + step) / (10 + step))
        shadow = list(self.shadow.parameters())
        # One fused update for all tensors (same values as a per-tensor lerp_, fewer kernel launches).
        torch._foreach_lerp_(shadow, [p.detach().to(s.dtype) for s, p in zip(shadow, model.parameters())], 1 - d)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.shadow.load_state_dict(state)
