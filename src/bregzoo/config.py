"""The run configuration: nested frozen dataclasses that round-trip through JSON and TOML unchanged.

Components are named by registry spec, as on the command line: ``divergence = "power:alpha=0.5"``.
A file may also write a component as a table, ``{"name": "power", "alpha": 0.5}``; it is read back
as the spec string. Unknown keys are errors that name the key and list the valid ones.

Example:
    >>> cfg = RunConfig().replace(divergence="lsif", **{"train.steps": 100})
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

from bregzoo.errors import BregzooError
from bregzoo.registry import parse_spec

COMPONENTS = ("task", "teacher", "schedule", "backbone", "divergence", "estimator")
MAX_CONFIG_BYTES = 2**20  # a config is a few KiB; anything larger is not one, and is never read whole


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise BregzooError(message)


@dataclass(frozen=True)
class TrainConfig:
    """Budget, batch and bookkeeping. ``batch_size`` is per process and per micro-batch."""

    steps: int = 6000  # with the cosine decay: 1.4-1.7x the exact floor on gmm8 vs 4-11x at 2000 (benchmarks/results/study)
    batch_size: int = 512
    seed: int = 0
    fake_updates: int = 1  # k DSM updates of the fake denoiser per generator step (DMD2's TTUR uses 5)
    fake_warmup: int = 0  # DSM updates on the initial generator before the first generator step
    grad_accum: int = 1
    mixed_precision: str = "no"
    ema: float = 0.99  # EMA decay of the generator; 0 turns it off
    init_from_teacher: bool = True
    cpu_threads: int = 1  # torch threads per process; 0 keeps torch's default. Small nets run fastest on 1.
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    # A k-step student (DMD2's multi-step schedule, bregzoo.train.sampler): the generator is applied at k
    # noise levels, re-noising its output in between. student_times: the levels, largest first (None:
    # the first k of k + 1 EDM rho-spaced levels from the schedule's t_max; 1 step: t_max alone).
    student_steps: int = 1
    student_times: Optional[tuple[float, ...]] = None
    # Extra Gaussian latent coordinates (channels, for images) fed to the one-step generator beside
    # sigma(t_max)*eps: its input is (C + extra_latent, ...), its output the data's C (networks.LatentDenoiser).
    # 0: the latent is the data's shape. The fake denoiser and the estimator never see the latent.
    extra_latent: int = 0
    # The ratio estimator's network: "separate" (its own network on the backbone); "shared": a small head on
    # the fake denoiser's trunk features (networks.FeatureRatioHead, where DMD2 puts its discriminator), so
    # the generator's l(x_t) comes with D_fake(x_t) from one trunk pass, and the estimator's loss trains the
    # head and the trunk (as DMD2's GAN loss does); "shared-detached": the same head on detached features,
    # the trunk trained by the score loss alone (cheaper, but far less accurate: benchmarks/results/shared_estimator.md).
    # "auto": shared where it was measured as good as separate (vector features: the MLP), separate elsewhere
    # (image features: not measured yet); the resolved choice is in config.json ("ratio_net").
    ratio_net: str = "auto"
    # The share of the batch that the estimator's reference samples (the teacher's data at x_t) take, per
    # update: round(ref_fraction * batch_size) of them beside the full batch of student samples. BR_h's loss is
    # a sum of two means, so a smaller reference half stays unbiased; with a shared estimator it shortens
    # the trunk pass at reference x_t, the one cost a shared head adds to a DMD step.
    ref_fraction: float = 1.0
    compile: bool = False  # torch.compile the generator, the estimator and (unless ratio_net is shared) the fake denoiser

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "log_every", "eval_every", "checkpoint_every",
                     "keep_checkpoints"):
            _require(getattr(self, name) > 0, f"train.{name} must be > 0, got {getattr(self, name)}")
        for name in ("fake_updates", "fake_warmup", "seed", "cpu_threads", "extra_latent"):
            _require(getattr(self, name) >= 0, f"train.{name} must be >= 0, got {getattr(self, name)}")
        _require(self.mixed_precision in ("no", "bf16", "fp16"),
                 f"train.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        _require(self.ratio_net in ("auto", "separate", "shared", "shared-detached"),
                 f"train.ratio_net must be 'auto', 'separate', 'shared' or 'shared-detached', got {self.ratio_net!r}")
        _require(0 < self.ref_fraction <= 1 and round(self.ref_fraction * self.batch_size) >= 1,
                 f"train.ref_fraction must be in (0, 1] and leave at least one reference sample of the batch of "
                 f"{self.batch_size}, got {self.ref_fraction}")
        _require(0 <= self.ema < 1, f"train.ema must be in [0, 1), got {self.ema}")
        _require(self.seed < 2**63, f"train.seed must be < 2**63 (torch seeds are 64-bit), got {self.seed}")
        _require(self.student_steps >= 1, f"train.student_steps must be >= 1 (1: a one-step student), "
                                          f"got {self.student_steps}")
        _require(self.extra_latent == 0 or self.student_steps == 1,
                 f"train.extra_latent ({self.extra_latent}) is for one-step students: a k-step student re-noises "
                 f"its output in the data's shape, so it has no room for extra latent coordinates; set "
                 f"train.student_steps=1 or train.extra_latent=0")
        if self.student_times is not None:  # the range of the levels is checked against the schedule by resolve
            times = list(self.student_times)
            _require(len(times) == self.student_steps,
                     f"train.student_times has {len(times)} levels but train.student_steps is {self.student_steps}; "
                     "give one level per step (or leave student_times out for the default spacing)")
            _require(all(math.isfinite(t) and t > 0 for t in times),
                     f"train.student_times must be finite noise levels > 0, got {times}")
            _require(all(a > b for a, b in zip(times, times[1:])),
                     f"train.student_times must be strictly decreasing (from high noise to low), got {times}")


@dataclass(frozen=True)
class OptimConfig:
    """Adam for the generator, the fake denoiser and the ratio estimator."""

    lr_generator: float = 1e-3
    lr_fake: float = 1e-3
    lr_estimator: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)  # beta1 = 0 as in DMD2 and f-distill
    weight_decay: float = 0.0
    grad_clip: float = 10.0  # max gradient norm per network; 0 turns clipping off
    generator_decay: str = "cosine"  # "none" | "cosine": the generator's lr follows a half cosine to 0

    def __post_init__(self) -> None:
        for name in ("lr_generator", "lr_fake", "lr_estimator"):
            _require(getattr(self, name) > 0, f"optim.{name} must be > 0, got {getattr(self, name)}")
        _require(all(0 <= b < 1 for b in self.betas), f"optim.betas must lie in [0, 1), got {self.betas}")
        _require(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.generator_decay in ("none", "cosine"),
                 f"optim.generator_decay must be 'none' or 'cosine', got {self.generator_decay!r}")
        _require(self.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")


@dataclass(frozen=True)
class WeightingConfig:
    """How omega = exp(log_weight(l)) is tamed before it weights the generator gradient."""

    # "auto", and None for truncate and warmup, mean the divergence's default (bregzoo.train.weighting
    # .resolve, docs/math.md): a weight read from the estimated ratio is per-bin normalised, truncated
    # and ramped in; a constant weight (reverse-KL) is left alone. The resolved values are in config.json.
    clamp: Optional[float] = None  # clamp l = log r to [-clamp, clamp]; l is always within +-50 (what check verifies)
    normalize: str = "auto"  # "auto" | "none" | "batch" (divide by the batch mean) | "ema-bins" (f-distill)
    bins: int = 10  # time bins for "ema-bins"
    bin_decay: float = 0.9  # EMA decay of each bin's mean weight
    truncate: Optional[float] = None  # cap a normalised weight at this multiple of the mean (Ionides 2008); inf: no cap
    warmup: Optional[int] = None  # generator steps over which log omega ramps from 0 (DMD) to the divergence's own
    estimator_lr_scale: Optional[float] = None  # the estimator's lr is optim.lr_estimator times this (None: auto)
    defensive: Optional[float] = None  # (1 - lambda) omega + lambda: a share of DMD's weight (None: auto, 0; docs/math.md §8)
    gan: float = 0.0  # weight of the non-saturating GAN term from the estimator's logits
    dmd_normaliser: bool = True  # divide g by the per-sample mean |x0 - D_teacher| (DMD); False: by 1

    def __post_init__(self) -> None:
        _require(self.clamp is None or self.clamp > 0, f"weighting.clamp must be > 0, got {self.clamp}")
        _require(self.normalize in ("auto", "none", "batch", "ema-bins"),
                 f"weighting.normalize must be 'auto', 'none', 'batch' or 'ema-bins', got {self.normalize!r}")
        _require(self.bins > 0, f"weighting.bins must be > 0, got {self.bins}")
        _require(0 <= self.bin_decay < 1, f"weighting.bin_decay must be in [0, 1), got {self.bin_decay}")
        _require(self.gan >= 0, f"weighting.gan must be >= 0, got {self.gan}")
        _require(self.truncate is None or self.truncate > 1,
                 f"weighting.truncate must be > 1 (a multiple of the mean weight; inf: no cap) or omitted, "
                 f"got {self.truncate}")
        _require(self.truncate is None or math.isinf(self.truncate) or self.normalize != "none",
                 "weighting.truncate caps normalised weights: set weighting.normalize to 'batch' or 'ema-bins'")
        _require(self.warmup is None or self.warmup >= 0, f"weighting.warmup must be >= 0, got {self.warmup}")
        _require(self.estimator_lr_scale is None or (math.isfinite(self.estimator_lr_scale)
                                                     and self.estimator_lr_scale > 0),
                 f"weighting.estimator_lr_scale must be a finite number > 0 or omitted, got {self.estimator_lr_scale}")
        _require(self.defensive is None or 0 <= self.defensive <= 1,
                 f"weighting.defensive must be in [0, 1] (the share of the constant weight) or omitted, got {self.defensive}")


@dataclass(frozen=True)
class EvalConfig:
    """Sample-quality evaluation of the student (EMA generator) and the teacher's ODE sampler."""

    samples: int = 2000
    metrics: tuple[str, ...] = ("mode-recall", "mmd", "precision")
    final_metrics: tuple[str, ...] = ("mode-recall", "mmd", "w2", "precision", "nll")
    teacher_steps: int = 40
    teacher_sampler: str = "heun"
    # The teacher sampler starts at noise level s = teacher_sigma_max (EDM's 80) when the teacher is
    # valid there, whatever the training schedule's t_max: from s = 3 its samples are biased (docs/math.md).
    # It only ever raises the start: a value below the schedule's own top keeps the schedule's.
    teacher_sigma_max: float = 80.0

    def __post_init__(self) -> None:
        _require(self.samples >= 2, f"eval.samples must be >= 2, got {self.samples}")
        _require(self.teacher_steps >= 1, f"eval.teacher_steps must be >= 1, got {self.teacher_steps}")
        _require(self.teacher_sigma_max > 0, f"eval.teacher_sigma_max must be > 0, got {self.teacher_sigma_max}")
        _require(self.teacher_sampler in ("euler", "heun"),
                 f"eval.teacher_sampler must be 'euler' or 'heun', got {self.teacher_sampler!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. ``out`` is the run directory (None: chosen from the names)."""

    task: str = "gmm8"
    teacher: str = "analytic-gmm"
    # The defaults distill the 8-Gaussian ring in about two minutes on 2 CPU cores (README, benchmarks/).
    # EDM noise up to 3 (about twice the data's std) spends the steps where the modes separate; Fourier
    # features let the small MLP learn the sharp one-step map. Images want e.g. "edm" (t_max 80) and a UNet.
    schedule: str = "edm:t_min=0.02,t_max=3.0"
    backbone: str = "mlp:width=64,fourier=16"
    divergence: str = "reverse-kl"
    estimator: str = "classifier"
    out: Optional[str] = None
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            parse_spec(getattr(self, name))  # syntax only; names are resolved by the registries

    # -- conversion ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a dict; unknown keys and wrong types are errors that say where."""
        return _from_plain(cls, data, "")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_toml(self) -> str:
        """TOML text that ``from_toml`` reads back to an equal config.

        TOML has no null: a None is written by omitting the key, which reads back as the default, so
        every Optional field defaults to None.
        """
        return _dump_toml(self.to_dict())

    @classmethod
    def from_toml(cls, text: str) -> RunConfig:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            return cls.from_dict(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise BregzooError(f"invalid TOML config: {exc}") from None
        except RecursionError:
            raise BregzooError("invalid TOML config: it nests too deeply to be a bregzoo config") from None

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a ``.toml`` or ``.json`` config, or a run's ``config.json`` (its ``config`` section)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if path.exists() and not path.is_file():  # /dev/zero, a FIFO: reading would never end
            raise BregzooError(f"config file {path} is not a regular file; give a .toml or .json file")
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise BregzooError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB; a bregzoo "
                                   "config is a few KiB ('bregzoo train --dry-run' prints one)")
            text = raw.decode("utf-8")
        except FileNotFoundError:
            raise BregzooError(f"config file {path} does not exist") from None
        except UnicodeDecodeError as exc:
            raise BregzooError(f"config file {path} is not UTF-8 text (byte {exc.start} is not; is it a binary "
                               "file?); give a .toml or .json config ('bregzoo train --dry-run' prints one)") from None
        if not text.strip():  # an empty TOML file would silently mean "all defaults"
            raise BregzooError(f"config file {path} is empty; write the settings there "
                               "('bregzoo train --dry-run' prints a full config) or drop --config")
        if path.suffix == ".toml":
            return cls.from_toml(text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BregzooError(f"config file {path} is not valid JSON: {exc}") from None
        except RecursionError:
            raise BregzooError(f"config file {path} nests too deeply to be a bregzoo config") from None
        if isinstance(data, dict) and "bregzoo_run" in data:  # a run directory's config.json
            data = data.get("config", {})
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with changes; nested keys are dotted: ``replace(**{"train.steps": 10})``."""
        data = self.to_dict()
        for key, value in changes.items():
            *head, last = key.split(".")
            node = data
            for part in head:
                if not isinstance(node.get(part), dict):
                    sections = [k for k, v in data.items() if isinstance(v, dict)]
                    raise BregzooError(f"unknown config section {part!r} in {key!r}; sections: {', '.join(sections)}")
                node = node[part]
            if last not in node:
                import difflib

                close = difflib.get_close_matches(last, list(node), n=3)
                hint = f"did you mean {', '.join(repr('.'.join([*head, c])) for c in close)}? " if close else ""
                raise BregzooError(f"unknown config key {key!r}; {hint}valid keys"
                                   f"{' in ' + repr('.'.join(head)) if head else ''}: {', '.join(node)}")
            node[last] = list(value) if isinstance(value, tuple) else value
        return RunConfig.from_dict(data)


# -- dict <-> dataclass ---------------------------------------------------------------------------

def dotted(d: dict[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """A nested dict (a config's ``to_dict()``) as one level of joined keys.

    >>> dotted({"train": {"steps": 2}, "task": "gmm8"})
    {'train.steps': 2, 'task': 'gmm8'}
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(dotted(v, sep, f"{prefix}{k}{sep}"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_plain(v) for v in obj]
    return obj


def _spec_string(value: Any, where: str) -> str:
    """A component as a spec string; a table ``{"name": ..., **params}`` is folded into one."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        params = {k: v for k, v in value.items() if k != "name"}
        return value["name"] + (":" + ",".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                                               for k, v in params.items()) if params else "")
    raise BregzooError(f"config key {where!r} must be a component spec such as 'power:alpha=0.5', got {value!r}")


def _from_plain(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise BregzooError(f"config section {where or '(top level)'!r} must be a table/object, got {data!r}")
    hints = typing.get_type_hints(cls)
    valid = _field_names(cls)
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise BregzooError(
            f"unknown config key {(where + '.' if where else '') + unknown[0]!r}; "
            f"valid keys{' in ' + repr(where) if where else ''}: {', '.join(valid)}"
        )
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _from_plain(tp, value, path)
        elif cls is RunConfig and key in COMPONENTS:
            kwargs[key] = _spec_string(value, path)
        else:
            kwargs[key] = _coerce(tp, value, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats, lists for tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise BregzooError(f"config key {where!r} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise BregzooError(f"config key {where!r} must have {len(args)} entries, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }[tp](value)
    if not ok:
        raise BregzooError(f"config key {where!r} must be {tp.__name__}, got {value!r}")
    return float(value) if tp is float else value


# -- TOML writer (tomllib only reads) -------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _dump_toml(data: dict[str, Any]) -> str:
    top = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    out = ["# bregzoo run config (bregzoo train --config FILE)", *top]
    for section, table in data.items():
        if isinstance(table, dict):
            out += ["", f"[{section}]"]
            out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(out) + "\n"
