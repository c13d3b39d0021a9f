"""h, h' and h'' of a plugin's own ``h`` in high precision: the reference the weight claims judge against.

Float64 autograd of h cannot be trusted where h is written in a form that cancels: the triangular
discrimination h = (r-1)((r-1)/(r+1)) has h'' = 8/(r+1)^3, which autograd assembles from terms of
size 4/r^2 that cancel, so at r = e^18 float64 gets h'' wrong by several per cent. No float64
method recovers it. Here the plugin's h runs unchanged on ``Jet``, a stand-in for a 1-D float64
tensor whose elements are second-order jets (h, h', h'') in mpmath at a chosen precision, so the
derivatives are exact up to that precision. The result is computed at two precisions and points
where they disagree are reported, never silently trusted.

A Jet supports the elementwise operations generators are written with (arithmetic, pow, exp, log,
log1p, expm1, sqrt, xlogy, xlog1py, softplus, sigmoid, where, clamp, ...). An h that uses anything
else raises ``Unsupported``, and the caller falls back to float64 autograd.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import mpmath
import torch
from torch import Tensor

PRECISIONS = (256, 384)  # bits: ~77 and ~115 digits; |l| <= 50 cancels at most ~45 digits in the zoo


class Unsupported(Exception):
    """h used an operation that ``Jet`` does not implement."""


class _Rules:
    """(g, g', g'') of elementary functions at an mpf value."""

    @staticmethod
    def log(v):
        return mpmath.log(v), 1 / v, -1 / (v * v)

    @staticmethod
    def exp(v):
        e = mpmath.exp(v)
        return e, e, e

    @staticmethod
    def log1p(v):
        return mpmath.log1p(v), 1 / (1 + v), -1 / ((1 + v) * (1 + v))

    @staticmethod
    def expm1(v):
        e = mpmath.exp(v)
        return mpmath.expm1(v), e, e

    @staticmethod
    def sqrt(v):
        s = mpmath.sqrt(v)
        return s, 1 / (2 * s), -1 / (4 * s * v)

    @staticmethod
    def rsqrt(v):
        s = mpmath.sqrt(v)
        return 1 / s, -1 / (2 * s * v), 3 / (4 * s * v * v)

    @staticmethod
    def reciprocal(v):
        return 1 / v, -1 / (v * v), 2 / (v * v * v)

    @staticmethod
    def square(v):
        return v * v, 2 * v, mpmath.mpf(2)

    @staticmethod
    def softplus(v):
        s = 1 / (1 + mpmath.exp(-v))
        return mpmath.log1p(mpmath.exp(v)) if v < 0 else v + mpmath.log1p(mpmath.exp(-v)), s, s * (1 - s)

    @staticmethod
    def sigmoid(v):
        s = 1 / (1 + mpmath.exp(-v))
        return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)

    @staticmethod
    def tanh(v):
        t = mpmath.tanh(v)
        return t, 1 - t * t, -2 * t * (1 - t * t)

    @staticmethod
    def sin(v):
        return mpmath.sin(v), mpmath.cos(v), -mpmath.sin(v)

    @staticmethod
    def cos(v):
        return mpmath.cos(v), -mpmath.sin(v), -mpmath.cos(v)

    @staticmethod
    def atan(v):
        d = 1 / (1 + v * v)
        return mpmath.atan(v), d, -2 * v * d * d

    @staticmethod
    def lgamma(v):
        return mpmath.loggamma(v), mpmath.digamma(v), mpmath.psi(1, v)

    @staticmethod
    def abs(v):
        s = 1 if v >= 0 else -1
        return abs(v), mpmath.mpf(s), mpmath.mpf(0)


_NAN = mpmath.mpf("nan")


def _real(x: Any) -> Any:
    """mpmath answers log(-1) or sqrt(-1) with a complex number; a real tensor would give NaN."""
    return x if isinstance(x, mpmath.mpf) else _NAN


class Jet:
    """A 1-D float64-tensor look-alike of jets (value, d/dr, d²/dr²) in mpmath; see the module docstring."""

    __slots__ = ("v", "d1", "d2")
    dtype = torch.float64
    device = torch.device("cpu")
    requires_grad = False

    def __init__(self, v: list, d1: list, d2: list) -> None:
        self.v, self.d1, self.d2 = v, d1, d2

    @classmethod
    def variable(cls, r: Sequence) -> "Jet":
        """The identity jet at the points ``r`` (mpf values)."""
        one, zero = mpmath.mpf(1), mpmath.mpf(0)
        return cls(list(r), [one] * len(r), [zero] * len(r))

    # -- tensor look-alike -----------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return torch.Size([len(self.v)])

    @property
    def ndim(self) -> int:
        return 1

    def dim(self) -> int:
        return 1

    def numel(self) -> int:
        return len(self.v)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else len(self.v)

    def __len__(self) -> int:
        return len(self.v)

    def _same(self, *_: Any, **__: Any) -> "Jet":
        return self

    detach = clone = double = float = contiguous = _same
    to = cpu = type_as = _same

    def _const(self, values: list) -> "Jet":
        zero = mpmath.mpf(0)
        return Jet(values, [zero] * len(values), [zero] * len(values))

    def _lift(self, x: Any) -> "Jet":
        """A scalar, a 0-d or matching 1-d tensor, or a Jet, as a Jet of this length."""
        if isinstance(x, Jet):
            return x
        if isinstance(x, Tensor):
            x = x.detach().double().cpu()
            if x.numel() == 1:
                return self._const([mpmath.mpf(float(x))] * len(self.v))
            if x.shape == self.shape:
                return self._const([mpmath.mpf(float(a)) for a in x.tolist()])
            raise Unsupported(f"a tensor of shape {tuple(x.shape)} combined with h's input")
        if isinstance(x, (bool, int, float)):
            return self._const([mpmath.mpf(x)] * len(self.v))
        raise Unsupported(f"an operand of type {type(x).__name__}")

    def _unary(self, rule: Callable) -> "Jet":
        v, d1, d2 = [], [], []
        for a, b, c in zip(self.v, self.d1, self.d2):
            g0, g1, g2 = (_real(g) for g in rule(a))
            v.append(g0)
            d1.append(g1 * b)
            d2.append(g2 * b * b + g1 * c)
        return Jet(v, d1, d2)

    # -- arithmetic ------------------------------------------------------------------------
    def __add__(self, other: Any) -> "Jet":
        o = self._lift(other)
        return Jet([a + b for a, b in zip(self.v, o.v)], [a + b for a, b in zip(self.d1, o.d1)],
                   [a + b for a, b in zip(self.d2, o.d2)])

    __radd__ = __add__

    def __neg__(self) -> "Jet":
        return Jet([-a for a in self.v], [-a for a in self.d1], [-a for a in self.d2])

    def __pos__(self) -> "Jet":
        return self

    def __sub__(self, other: Any) -> "Jet":
        return self + (-self._lift(other))

    def __rsub__(self, other: Any) -> "Jet":
        return self._lift(other) - self

    def __mul__(self, other: Any) -> "Jet":
        o = self._lift(other)
        return Jet([a * b for a, b in zip(self.v, o.v)],
                   [a1 * b + a * b1 for a, a1, b, b1 in zip(self.v, self.d1, o.v, o.d1)],
                   [a2 * b + 2 * a1 * b1 + a * b2
                    for a, a1, a2, b, b1, b2 in zip(self.v, self.d1, self.d2, o.v, o.d1, o.d2)])

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "Jet":
        return self * self._lift(other).reciprocal()

    def __rtruediv__(self, other: Any) -> "Jet":
        return self._lift(other) * self.reciprocal()

    def __pow__(self, other: Any) -> "Jet":
        if isinstance(other, (int, float)) or (isinstance(other, Tensor) and other.numel() == 1):
            p = mpmath.mpf(float(other))
            if p == 2:
                return self.square()
            return self._unary(lambda v: (v**p, p * v ** (p - 1), p * (p - 1) * v ** (p - 2)))
        return (self.log() * other).exp()  # a varying exponent: x^y = exp(y log x), x > 0

    def __rpow__(self, other: Any) -> "Jet":
        return (self * self._lift(other).log()).exp()

    def pow(self, other: Any) -> "Jet":
        return self**other

    def __abs__(self) -> "Jet":
        return self._unary(_Rules.abs)

    # -- comparisons give plain bool tensors, as they would on a tensor --------------------
    def _compare(self, other: Any, op: Callable) -> Tensor:
        o = self._lift(other)
        return torch.tensor([bool(op(a, b)) for a, b in zip(self.v, o.v)], dtype=torch.bool)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def __eq__(self, other):  # type: ignore[override]
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):  # type: ignore[override]
        return self._compare(other, lambda a, b: a != b)

    __hash__ = object.__hash__

    # -- elementwise functions -------------------------------------------------------------
    def log(self):
        return self._unary(_Rules.log)

    def exp(self):
        return self._unary(_Rules.exp)

    def log1p(self):
        return self._unary(_Rules.log1p)

    def expm1(self):
        return self._unary(_Rules.expm1)

    def sqrt(self):
        return self._unary(_Rules.sqrt)

    def rsqrt(self):
        return self._unary(_Rules.rsqrt)

    def reciprocal(self):
        return self._unary(_Rules.reciprocal)

    def square(self):
        return self._unary(_Rules.square)

    def sigmoid(self):
        return self._unary(_Rules.sigmoid)

    def tanh(self):
        return self._unary(_Rules.tanh)

    def sin(self):
        return self._unary(_Rules.sin)

    def cos(self):
        return self._unary(_Rules.cos)

    def atan(self):
        return self._unary(_Rules.atan)

    def lgamma(self):
        return self._unary(_Rules.lgamma)

    def abs(self):
        return self._unary(_Rules.abs)

    def neg(self):
        return -self

    def log2(self):
        return self.log() / math.log(2.0)

    def log10(self):
        return self.log() / math.log(10.0)

    def clamp(self, min: Any = None, max: Any = None) -> "Jet":
        lo = None if min is None else self._lift(min)
        hi = None if max is None else self._lift(max)
        zero = mpmath.mpf(0)
        v, d1, d2 = list(self.v), list(self.d1), list(self.d2)
        for i, a in enumerate(self.v):
            if lo is not None and a < lo.v[i]:
                v[i], d1[i], d2[i] = lo.v[i], zero, zero
            elif hi is not None and a > hi.v[i]:
                v[i], d1[i], d2[i] = hi.v[i], zero, zero
        return Jet(v, d1, d2)

    def clamp_min(self, m: Any) -> "Jet":
        return self.clamp(min=m)

    def clamp_max(self, m: Any) -> "Jet":
        return self.clamp(max=m)

    # -- torch functions -------------------------------------------------------------------
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        impl = _TORCH.get(name)
        if impl is None:
            raise Unsupported(f"torch function {name!r}")
        return impl(*args, **kwargs)


def _first_jet(*xs: Any) -> Jet:
    return next(x for x in xs if isinstance(x, Jet))


def _lifted(*xs: Any) -> list[Jet]:
    j = _first_jet(*xs)
    return [j._lift(x) for x in xs]


def _where(cond: Any, a: Any, b: Any) -> Jet:
    if not (isinstance(a, Jet) or isinstance(b, Jet)):
        raise Unsupported("torch.where whose branches do not depend on r")
    a, b = _lifted(a, b)
    c = torch.as_tensor(cond).expand(a.shape).tolist()
    return Jet(*([x if k else y for k, x, y in zip(c, getattr(a, f), getattr(b, f))] for f in ("v", "d1", "d2")))


def _extreme(keep_first: Callable) -> Callable:
    def f(x: Any, y: Any) -> Jet:
        a, b = _lifted(x, y)
        c = [keep_first(p, q) for p, q in zip(a.v, b.v)]
        return Jet(*([p if k else q for k, p, q in zip(c, getattr(a, f), getattr(b, f))] for f in ("v", "d1", "d2")))
    return f


def _xlogy(x: Any, y: Any) -> Jet:
    x, y = _lifted(x, y)
    out = x * y.log()
    for i, a in enumerate(x.v):  # torch's convention: 0 where x == 0, whatever y is
        if a == 0 and x.d1[i] == 0 and x.d2[i] == 0:
            out.v[i] = out.d1[i] = out.d2[i] = mpmath.mpf(0)
    return out


def _xlog1py(x: Any, y: Any) -> Jet:
    x, y = _lifted(x, y)
    return x * y.log1p()


def _softplus(x: Jet, beta: float = 1.0, threshold: float = 20.0) -> Jet:
    # torch returns x itself past threshold/beta; the jet keeps the exact function, which differs by < e^-20
    return x._unary(_Rules.softplus) if beta == 1 else (x * beta)._unary(_Rules.softplus) / beta


def _constant(value: float | None) -> Callable:
    def make(x: Any, fill: Any = None, *_: Any, **__: Any) -> Jet:
        return x._const([mpmath.mpf(float(fill if value is None else value))] * len(x))
    return make


def _method(name: str) -> Callable:
    def f(x: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(x, name)(*args, **kwargs)
    return f


def _operator(fn: Callable[[Jet, Jet], Jet]) -> Callable:
    def f(x: Any, y: Any, *_: Any, **__: Any) -> Jet:
        return fn(*_lifted(x, y))
    return f


_METHODS = ("log", "exp", "log1p", "expm1", "sqrt", "rsqrt", "reciprocal", "square", "sigmoid", "tanh", "sin",
            "cos", "atan", "lgamma", "abs", "neg", "log2", "log10", "clamp", "clamp_min", "clamp_max", "pow")
_TORCH: dict[str, Callable] = {n: _method(n) for n in _METHODS}
_TORCH.update({
    "negative": _method("neg"), "expit": _method("sigmoid"), "special_expit": _method("sigmoid"),
    "special_expm1": _method("expm1"), "special_log1p": _method("log1p"), "softplus": _softplus,
    "where": _where, "xlogy": _xlogy, "special_xlogy": _xlogy,
    "xlog1py": _xlog1py, "special_xlog1py": _xlog1py,
    "ones_like": _constant(1.0), "zeros_like": _constant(0.0), "full_like": _constant(None),
    "maximum": _extreme(lambda p, q: p >= q), "minimum": _extreme(lambda p, q: p <= q),
    "logaddexp": lambda x, y: (lambda a, b: a + _softplus(b - a))(*_lifted(x, y)),
    "add": _operator(lambda a, b: a + b), "__add__": _operator(lambda a, b: a + b),
    "__radd__": _operator(lambda a, b: a + b), "sub": _operator(lambda a, b: a - b),
    "__sub__": _operator(lambda a, b: a - b), "__rsub__": _operator(lambda a, b: b - a),
    "mul": _operator(lambda a, b: a * b), "__mul__": _operator(lambda a, b: a * b),
    "__rmul__": _operator(lambda a, b: a * b), "div": _operator(lambda a, b: a / b),
    "true_divide": _operator(lambda a, b: a / b), "__truediv__": _operator(lambda a, b: a / b),
    "__rtruediv__": _operator(lambda a, b: b / a),
})


def derivatives(h: Callable[[Any], Any], ell: Tensor, prec: int) -> tuple[list, list, list]:
    """(h, h', h'') at r = exp(ell) as mpf lists, computed at ``prec`` bits; raises ``Unsupported``."""
    with mpmath.workprec(prec):
        r = Jet.variable([mpmath.exp(mpmath.mpf(x)) for x in ell.double().tolist()])
        try:
            out = h(r)
        except Unsupported:
            raise
        except Exception as exc:  # h did something a Jet cannot imitate: an unsupported tensor method, ...
            raise Unsupported(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(out, Jet):
            out = r._lift(out)
        if len(out) != len(r):
            raise Unsupported(f"h returned {len(out)} values for {len(r)} inputs")
        return out.v, out.d1, out.d2


def _to_float(x: Any) -> float:
    try:
        return float(x)
    except (OverflowError, ValueError):
        return math.inf if x > 0 else -math.inf
    except TypeError:  # a complex value: NaN, as a real tensor would have it
        return math.nan


def reference(h: Callable[[Any], Any], ell: Tensor) -> dict[str, Tensor]:
    """h', h'', log(r h'') at r = exp(ell), rounded to float64, and each one's measured relative error.

    The error of a point is how much the two precisions in ``PRECISIONS`` disagree there (log-space
    for h'' and log omega). A point with h'' <= 0 gets log omega = NaN: h is not convex there.
    """
    results = [derivatives(h, ell, p) for p in PRECISIONS]
    out: dict[str, list] = {"d1": [], "d2": [], "log_omega": [], "err_d1": [], "err_w": []}
    with mpmath.workprec(PRECISIONS[-1]):
        r_values = [mpmath.exp(mpmath.mpf(x)) for x in ell.double().tolist()]
        for i, r in enumerate(r_values):
            (_, a1, a2), (_, b1, b2) = ((res[0][i], res[1][i], res[2][i]) for res in results)
            scale = abs(b1) + abs(r * b2)
            out["d1"].append(_to_float(b1))
            out["d2"].append(_to_float(b2))
            out["log_omega"].append(_to_float(mpmath.log(r * b2)) if b2 > 0 else math.nan)
            out["err_d1"].append(_to_float(abs(a1 - b1) / scale) if scale > 0 else 0.0)
            out["err_w"].append(_to_float(abs(a2 - b2) / abs(b2)) if b2 != 0 else (0.0 if a2 == 0 else math.inf))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}
