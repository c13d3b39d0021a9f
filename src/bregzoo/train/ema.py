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
        self._lists: tuple[nn.Module, list[Tensor], list[Tensor], bool] | None = None

    def _pairs(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor], list[tuple[Tensor, Tensor]]]:
        """The shadow's and ``model``'s parameters, and their buffer pairs. The parameters are listed once per
        model (walking the module tree every step cost ~0.3 ms of a CPU step, benchmarks/perf.py): a Parameter
        object outlives ``.to()`` and ``load_state_dict``, which replace or copy its data in place. Buffers
        are looked up each step, since ``.to()`` replaces them, and only when the model has any."""
        if self._lists is None or self._lists[0] is not model:
            self._lists = (model, list(self.shadow.parameters()), list(model.parameters()),
                           next(model.buffers(), None) is not None)
        _, shadow, params, has_buffers = self._lists
        return shadow, params, list(zip(self.shadow.buffers(), model.buffers())) if has_buffers else []

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the shadow towards ``model`` after optimizer step number ``step`` (0-based)."""
        d = min(self.decay, (1 + step) / (10 + step))
        shadow, params, buffers = self._pairs(model)
        if any(s.dtype != p.dtype for s, p in zip(shadow, params)):
            params = [p.to(s.dtype) for s, p in zip(shadow, params)]
        # One fused update for all tensors (same values as a per-tensor lerp_, fewer kernel launches).
        torch._foreach_lerp_(shadow, params, 1 - d)
        for s, b in buffers:
            s.copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.shadow.load_state_dict(state)
