"""The Divergence base class: a Bregman generator h on (0, inf) and its generator weight.

Conventions (DESIGN.md): r = q_student / p_teacher, l = log r, and the generator weight is
omega(r) = r h''(r). Subclasses are small frozen dataclasses. Only ``h`` is required: ``dh``,
``d2h`` and ``log_weight`` fall back to autograd, so a plugin that writes down h alone still works.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import lazy_loader

from bregzoo.errors import BregzooError

if TYPE_CHECKING:
    from torch import Tensor

# Imported on first use: listing the zoo (`bregzoo divergences`, `bregzoo plugins`) reads only the classes'
# names and formulas, and torch's import is most of a command's start-up time.
torch = lazy_loader.load("torch")


def _derivative(fn: Callable[[Tensor], Tensor], r: Tensor, order: int) -> Tensor:
    """Elementwise derivative of an elementwise function, by autograd, in float64.

    If ``r`` itself requires grad (an estimator's output), the result stays differentiable in r.
    """
    keep_graph = r.requires_grad
    with torch.enable_grad():
        x = r.double() if keep_graph else r.detach().double().requires_grad_(True)
        y = fn(x)
        for k in range(order):
            (y,) = torch.autograd.grad(y.sum(), x, create_graph=keep_graph or k + 1 < order)
    y = y if keep_graph else y.detach()
    return y.to(r.dtype)


@dataclass(frozen=True)
class Divergence:
    """A strictly convex Bregman generator h. Parameters are dataclass fields.

    Example:
        >>> import torch
        >>> from bregzoo import create_divergence
        >>> div = create_divergence("power", alpha=0.5)
        >>> div.log_weight(torch.zeros(1))  # log((1 + alpha) * r**alpha) at r = 1
        tensor([0.4055])
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # the "known as" column of `bregzoo divergences`
    h_formula: ClassVar[str] = ""  # the "h(r)" column, e.g. "(r - 1)^2 / (r + 1)"
    weight_formula: ClassVar[str] = ""  # the "omega(r) = r h''(r)" column, e.g. "8r/(r + 1)^3"
    # What D_h(q||p) equals, as text (e.g. "∫(q−p)²/(q+p)"); with ``named_integrand`` it is checked.
    named_divergence: ClassVar[str] = ""

    def h(self, r: Tensor) -> Tensor:
        """The generator h(r), elementwise."""
        raise NotImplementedError(f"divergence {self.name!r} does not define h(r)")

    def dh(self, r: Tensor) -> Tensor:
        """h'(r), elementwise. Falls back to autograd."""
        return _derivative(self.h, r, 1)

    def d2h(self, r: Tensor) -> Tensor:
        """h''(r), elementwise. Falls back to autograd."""
        return _derivative(self.h, r, 2)

    def log_weight(self, ell: Tensor) -> Tensor:
        """log omega = log(r h''(r)) at r = exp(ell). Falls back to autograd in float64."""
        r = ell.detach().double().exp()
        return torch.log(r * self.d2h(r)).to(ell.dtype)

    def named_integrand(self, log_q: Tensor, log_p: Tensor) -> Tensor | None:
        """Optional: the integrand of the textbook divergence that D_h(q||p) equals, from the log-densities.

        ``bregzoo check`` integrates it on its test problems and compares it with D_h (claims
        ``named-divergence`` and ``named-gradient``). None (the default) states nothing.
        """
        return None

    # -- bookkeeping -------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The parameters as a plain dict, e.g. ``{"alpha": 0.5}``."""
        return dataclasses.asdict(self)

    def spec(self) -> str:
        """The CLI spelling, e.g. ``power:alpha=0.5``."""
        args = ",".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.name}:{args}" if args else self.name

    @property
    def has_closed_form_weight(self) -> bool:
        """Whether the class overrides the autograd fallback of ``log_weight``."""
        return type(self).log_weight is not Divergence.log_weight


def require(condition: bool, message: str) -> None:
    """Raise a user-facing error when a divergence parameter is outside its domain."""
    if not condition:
        raise BregzooError(message)
