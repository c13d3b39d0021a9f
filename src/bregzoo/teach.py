"""Train a diffusion teacher on a dataset: EDM's denoising objective with the core ``Denoiser``.

The loss is EDM's (Karras et al. 2022, eq. 8): noise levels s with log s ~ N(p_mean, p_std^2), clipped
to the schedule's range, weight lambda(s) = (s^2 + sd^2) / (s sd)^2, under either schedule (VP or EDM):
both are written in the scaled variable y = x/alpha, where a denoiser only sees the level s.

Every random number comes from one seeded ``torch.Generator`` whose state is checkpointed with the
weights, the EMA and Adam's moments, so a resumed CPU run is bitwise the run that was never stopped.
The result is a teacher directory (``bregzoo.teacher_dir``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from einops import reduce
from torch import Tensor

from bregzoo import io
from bregzoo.api import create_backbone, create_dataset
from bregzoo.errors import BregzooError
from bregzoo.networks import Denoiser, diffuse
from bregzoo.registry import parse_spec
from bregzoo.schedules import Schedule, make_schedule
from bregzoo.teacher import sample_ode
from bregzoo.teacher_dir import MARKER, RAW_WEIGHTS, WEIGHTS, is_teacher_dir, read_teacher_config, save_weights

Progress = Callable[[int, int, dict[str, float]], None]
SAMPLE_SEED = 12345  # the noise of samples.png


@dataclass(frozen=True)
class TeachConfig:
    """What determines a teacher. Components are registry specs, as on the command line."""

    dataset: str = "digits"
    backbone: str = "unet:channels=32,mults=1x2,blocks=1,attn=none"
    schedule: str = "edm"
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    lr_warmup: int = 100  # linear warm-up steps of the learning rate
    ema: float = 0.995
    seed: int = 0
    p_mean: float = -1.2  # EDM's log-normal training noise levels
    p_std: float = 1.2
    sampler: str = "heun"
    sampler_steps: int = 40
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    cpu_threads: int = 1  # small nets run fastest on one thread of a shared CPU; 0 keeps torch's default
    out: str | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "sampler_steps"):
            if getattr(self, name) < 1:
                raise BregzooError(f"teach: {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.p_std <= 0 or self.lr_warmup < 0 or self.cpu_threads < 0:
            raise BregzooError("teach: lr and p_std must be > 0, lr_warmup and cpu_threads >= 0")
        if not 0 <= self.ema < 1:
            raise BregzooError(f"teach: ema must be in [0, 1), got {self.ema}")
        if self.sampler not in ("euler", "heun"):
            raise BregzooError(f"teach: sampler must be 'euler' or 'heun', got {self.sampler!r}")
        for name in ("dataset", "backbone", "schedule"):
            parse_spec(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeachConfig:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise BregzooError(f"unknown teach config key {unknown[0]!r}; valid keys: {', '.join(sorted(valid))}")
        return cls(**data)

    def replace(self, **changes: Any) -> TeachConfig:
        return self.from_dict({**self.to_dict(), **changes})


@dataclass
class TeachResult:
    """What a finished ``teach`` reports."""

    out: Path
    steps: int
    seconds: float
    loss: float


def edm_loss(net: Denoiser, x0: Tensor, t: Tensor, z: Tensor, sigma_data: float) -> Tensor:
    """Per-sample EDM loss lambda(s) |D(x_t, t) - x0|^2 (mean over pixels), lambda = (s^2 + sd^2)/(s sd)^2."""
    sched = net.schedule
    xt = diffuse(x0, t, sched, z)
    s2 = sched.s(t).double().square()
    weight = ((s2 + sigma_data**2) / (s2 * sigma_data**2)).float()
    return weight * reduce((net(xt, t) - x0).square(), "b ... -> b", "mean")


def sample_levels(n: int, schedule: Schedule, p_mean: float, p_std: float, rng: torch.Generator) -> Tensor:
    """Training times: log s ~ N(p_mean, p_std^2) clipped to the schedule's [s(t_min), s(t_max)], mapped to t."""
    lo, hi = schedule.s(torch.tensor([schedule.t_min, schedule.t_max], dtype=torch.float64)).tolist()
    log_s = (p_mean + p_std * torch.randn(n, generator=rng, dtype=torch.float64)).clamp(math.log(lo), math.log(hi))
    return schedule.t_of_s(log_s.exp()).float()


class TeacherTrainer:
    """The network, its EMA, Adam and the random stream; one step; checkpoints that restore all four."""

    def __init__(self, cfg: TeachConfig) -> None:
        self.cfg = cfg
        self.dataset = create_dataset(cfg.dataset)
        name, params = parse_spec(cfg.schedule)
        self.schedule = make_schedule(name, **params)
        std = getattr(self.dataset, "std", None)
        self.sigma_data = float(std) if isinstance(std, (int, float)) and std > 0 else 0.5
        self.data_shape = tuple(self.dataset.data_shape)
        torch.manual_seed(cfg.seed)
        self.net = Denoiser(create_backbone(cfg.backbone, data_shape=self.data_shape), self.schedule, self.sigma_data)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.step = 0

    def train_step(self) -> float:
        """One Adam step on a fresh batch; returns the mean loss."""
        cfg, b = self.cfg, self.cfg.batch_size
        x0 = self.dataset.sample(b, generator=self.rng).float()
        t = sample_levels(b, self.schedule, cfg.p_mean, cfg.p_std, self.rng)
        z = torch.randn(x0.shape, generator=self.rng)
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (self.step + 1) / max(cfg.lr_warmup, 1))
        self.net.train()
        loss = edm_loss(self.net, x0, t, z, self.sigma_data).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # The EMA's decay ramps up so that the random initialisation does not linger (EDM and DMD practice).
        d = min(cfg.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters()):
                e.lerp_(p, 1 - d)
            for e, p in zip(self.ema.buffers(), self.net.buffers()):
                e.copy_(p)
        self.step += 1
        return loss.item()

    # -- checkpoints: one safetensors file; Adam's nested state is flattened into it ---------------
    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, str]]:
        opt = self.opt.state_dict()
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        for i, st in opt["state"].items():
            tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
        tensors["rng"] = self.rng.get_state()
        tensors["torch_rng"] = torch.get_rng_state()  # dropout draws from the global stream
        meta = {"step": str(self.step), "param_groups": json.dumps(opt["param_groups"]), "config": json.dumps(self.cfg.to_dict())}
        return tensors, meta

    def load_state_tensors(self, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
        def section(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.net.load_state_dict(section("net."))
        self.ema.load_state_dict(section("ema."))
        state: dict[int, dict[str, Tensor]] = {}
        for key, v in section("opt.").items():
            i, name = key.split(".", 1)
            state.setdefault(int(i), {})[name] = v
        self.opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
        self.rng.set_state(tensors["rng"])
        torch.set_rng_state(tensors["torch_rng"])
        self.step = int(meta["step"])

    def save_checkpoint(self, out: Path) -> Path:
        tensors, meta = self.state_tensors()
        final = out / "checkpoints" / f"step-{self.step:07d}"
        with io.atomic_dir(final) as tmp:  # a kill mid-save leaves the previous checkpoint as the latest
            io.save_file(tensors, tmp / "state.safetensors", metadata=meta)
        for old in sorted((out / "checkpoints").glob("step-*"))[: -self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: Path) -> None:
        file = path / "state.safetensors"
        self.load_state_tensors(io.load_file(file), io.read_metadata(file))

    @torch.no_grad()
    def samples(self, n: int) -> Tensor:
        """n samples of the EMA teacher at the configured sampler settings, from fixed noise."""
        g = torch.Generator().manual_seed(SAMPLE_SEED)
        noise = torch.randn(n, *self.data_shape, generator=g)
        return sample_ode(self.ema, self.schedule, noise, self.cfg.sampler_steps, self.cfg.sampler)

    def teacher_config(self) -> dict[str, Any]:
        """config.json of the teacher directory: what ``load_teacher_dir`` needs, plus the training config."""
        c = self.cfg
        return {MARKER: 1, "dataset": c.dataset, "backbone": c.backbone, "schedule": c.schedule,
                "sigma_data": self.sigma_data, "data_shape": list(self.data_shape),
                "sampler": {"method": c.sampler, "steps": c.sampler_steps}, "step": self.step,
                "objective": "edm", "train": c.to_dict(), "torch": torch.__version__}


def default_out(cfg: TeachConfig) -> str:
    """teachers/<dataset>-<backbone>-<schedule>."""
    return f"teachers/{parse_spec(cfg.dataset)[0]}-{parse_spec(cfg.backbone)[0]}-{parse_spec(cfg.schedule)[0]}"


def prepare_out(root: Path) -> None:
    """A fresh teacher directory: an earlier teacher there is replaced, any other non-empty directory refused."""
    if root.exists() and not root.is_dir():
        raise BregzooError(f"--out {root} is a file; choose another --out")
    if root.is_dir() and any(root.iterdir()) and not is_teacher_dir(root):
        raise BregzooError(f"--out {root} exists and is not a bregzoo teacher directory; choose another --out")
    for name in ("config.json", WEIGHTS, RAW_WEIGHTS, "samples.png", "metrics.jsonl", "checkpoints"):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    root.mkdir(parents=True, exist_ok=True)


def resume_config(path: str | Path, steps: int | None = None) -> TeachConfig:
    """The config of the teacher directory ``path`` (its ``train`` section), with ``steps`` raised if given."""
    cfg = TeachConfig.from_dict(read_teacher_config(path)["train"]).replace(out=str(path))
    return cfg.replace(steps=steps) if steps is not None else cfg


def teach(cfg: TeachConfig, *, resume: bool = False, progress: Progress | None = None) -> TeachResult:
    """Train a teacher and write its directory ``cfg.out``; ``resume`` continues from the latest checkpoint."""
    started = time.perf_counter()
    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    root = Path(cfg.out or default_out(cfg))
    trainer = TeacherTrainer(cfg)
    if resume:
        found = sorted((root / "checkpoints").glob("step-*")) if (root / "checkpoints").is_dir() else []
        if not found:
            raise BregzooError(f"--resume {root}: no checkpoint to resume from; start again without --resume")
        trainer.load_checkpoint(found[-1])
        _truncate_log(root / "metrics.jsonl", trainer.step)
    else:
        prepare_out(root)
    io.write_json(root / "config.json", trainer.teacher_config())

    loss, shown = float("nan"), {}
    while trainer.step < cfg.steps:
        loss = trainer.train_step()
        if not math.isfinite(loss):
            raise BregzooError(f"teach: the loss became {loss} at step {trainer.step}; lower --lr")
        step = trainer.step
        if step % cfg.log_every == 0 or step == cfg.steps:
            shown = {"loss": loss}
            io.append_line(root / "metrics.jsonl", json.dumps({"step": step, "loss": loss}))
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            trainer.save_checkpoint(root)
        if progress is not None:
            progress(step, cfg.steps, shown)

    # -- the end: checkpoint, weights, config and a grid of samples
    trainer.save_checkpoint(root)
    save_weights(root / WEIGHTS, trainer.ema, trainer.step)
    save_weights(root / RAW_WEIGHTS, trainer.net, trainer.step)
    io.write_json(root / "config.json", trainer.teacher_config())
    from bregzoo.train.plots import save_samples_png

    x = trainer.samples(64)
    save_samples_png(root / "samples.png", {f"teacher ({cfg.sampler}, {cfg.sampler_steps} steps, step {trainer.step})": x},
                     trainer.dataset, suptitle=f"{cfg.dataset}  {cfg.backbone}  schedule={cfg.schedule}")
    return TeachResult(root, trainer.step, time.perf_counter() - started, loss)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after ``step``: a resumed run writes them again."""
    if path.exists():
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        io.write_text(path, "".join(ln + "\n" for ln in lines))
