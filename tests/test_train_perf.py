"""The loop's fast paths: the shared-trunk ratio estimator (train.ratio_net), no host sync between logging
steps, torch.compile and bf16 on CPU. Speed itself is measured by benchmarks/perf.py, never asserted here."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from torch import nn

from bregzoo import BregzooError, create_backbone, io
from bregzoo.config import RunConfig
from bregzoo.networks import Denoiser, FeatureRatioHead, FeatureTap, feature_shape
from bregzoo.schedules import make_schedule
from bregzoo.train import train
from bregzoo.train.build import build, shared_ratio_head
from bregzoo.train.loop import Distiller, NonFiniteWatch, draw_step_noise

TINY = {
    "backbone": "mlp:width=16,depth=1", "schedule": "edm:t_min=0.02,t_max=10.0", "divergence": "lsif",
    "train.steps": 6, "train.batch_size": 32, "train.log_every": 3, "train.eval_every": 1000,
    "train.checkpoint_every": 1000, "train.fake_updates": 1, "weighting.warmup": 0,
    "eval.samples": 64, "eval.metrics": ["mmd"], "eval.final_metrics": ["mmd"], "eval.teacher_steps": 2,
}
SCHED = make_schedule("edm", t_min=0.02, t_max=10.0)


def tiny(tmp_path, name="run", **changes) -> RunConfig:
    return RunConfig().replace(out=str(tmp_path / name), **{**TINY, **changes})


IMAGE_BACKBONES = {
    "unet": "unet:channels=8,mults=1x2,blocks=1,attn=4",
    "ddpm-cifar": "ddpm-cifar:channels=8x8,layers=1,groups=4",
    "edm-ddpmpp": "edm:model_channels=8,channel_mult=1x2,num_blocks=1,attn_resolutions=4",
    "edm-ncsnpp": "edm:model_channels=8,channel_mult=1x2,num_blocks=1,attn_resolutions=4,arch=ncsnpp",
}


@pytest.mark.parametrize("spec, shape", [("mlp:width=16,depth=2", (2,)), ("mlp:width=16,depth=0", (2,)),
                                         *((s, (3, 8, 8)) for s in IMAGE_BACKBONES.values())],
                         ids=["mlp", "mlp-depth0", *IMAGE_BACKBONES])
def test_every_builtin_denoiser_backbone_exposes_trunk_features(spec, shape) -> None:
    torch.manual_seed(0)
    fake = Denoiser(create_backbone(spec, data_shape=shape), SCHED, 0.5)
    fshape = feature_shape(fake, shape, SCHED.t_max)
    head = FeatureRatioHead(fshape)
    x, t = torch.randn(4, *shape), torch.tensor([0.05, 0.5, 2.0, 9.0])
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in fake.modules()]
    tap = FeatureTap(fake)
    with tap.capture():
        d = fake(x, t)
    full, calls[:] = len(calls), []
    feats = tap.features(fake, x, t)
    for h in hooks:
        h.remove()
    assert d.shape == x.shape and feats.shape == (4, *fshape)
    torch.testing.assert_close(feats, tap.value)
    assert len(calls) < full  # the features alone: what comes after the feature module is not run
    out = head(feats, t)
    assert out.shape == (4,) and torch.count_nonzero(out) == 0  # the head starts at log r = 0


def test_a_backbone_without_features_is_refused_in_one_line() -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x, c):
            return self.lin(x)

    cfg = RunConfig().replace(**{"train.ratio_net": "shared"})
    with pytest.raises(BregzooError, match="exposes none .*use train.ratio_net=separate") as err:
        shared_ratio_head(cfg, Denoiser(Plain(), SCHED, 0.5), (2,), SCHED)
    assert "\n" not in str(err.value)
    with pytest.raises(BregzooError, match="train.ratio_net must be 'auto', 'separate', 'shared' or 'shared-detached'"):
        RunConfig().replace(**{"train.ratio_net": "head"})


@pytest.mark.parametrize("backbone, shape, resolved", [
    ("mlp:width=16,depth=1", None, "shared"),  # vector features: measured as good as separate
    (IMAGE_BACKBONES["unet"], (1, 8, 8), "separate"),  # image features: not measured yet
])
def test_auto_ratio_net_is_shared_only_for_vector_features(backbone, shape, resolved) -> None:
    from bregzoo.train.build import build_base

    cfg = RunConfig().replace(**{"backbone": backbone, "schedule": "edm:t_min=0.02,t_max=10.0"})
    base = build_base(cfg)
    if shape is not None:  # an image task without a network teacher: pretend the mixture is an image
        base.dataset.data_shape = shape
        base = type(base)(base.dataset, base.schedule, base.teacher, base.sigma_data)
    parts = build(cfg, base=base)
    assert cfg.train.ratio_net == "auto" and parts.ratio_net == resolved
    assert isinstance(parts.ratio, FeatureRatioHead) == (resolved == "shared")


def test_config_json_records_the_resolved_ratio_net(tmp_path) -> None:
    result = train(tiny(tmp_path, **{"train.steps": 1}), check=False)
    assert json.loads((result.run_dir / "config.json").read_text())["ratio_net"] == "shared"


@pytest.mark.parametrize("ratio_net, reaches_trunk", [("shared", True), ("shared-detached", False)])
def test_the_estimators_gradient_reaches_the_trunk_only_when_shared(ratio_net, reaches_trunk) -> None:
    from accelerate import Accelerator

    cfg = RunConfig().replace(**{**{k: v for k, v in TINY.items() if not k.startswith("eval")},
                                 "train.ratio_net": ratio_net})
    parts = build(cfg)
    d = Distiller(cfg, parts, Accelerator(cpu=True))
    noise = draw_step_noise(d.rng, parts, cfg, 1, 0)
    nz, est = d._on_device(noise["fake"][0], 0), d._on_device(noise["est"], 0)
    torch.nn.init.normal_(parts.ratio.net[-1].weight)  # a zero output layer passes no gradient back yet
    x0 = d._student_outputs(nz)
    xt = parts.schedule.sigma(nz["t"])[:, None] * nz["z"] + x0
    _, loss_head, _ = d._fake_and_head_loss(xt, x0, nz["t"], est)
    loss_head.backward()  # the head's loss alone
    assert all(p.grad is not None for p in parts.ratio.parameters())
    trunk = [p.grad for p in parts.fake.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert bool(trunk) == reaches_trunk


READBACKS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


@pytest.mark.parametrize("changes", [{}, {"train.ratio_net": "shared", "weighting.gan": 0.1},
                                     {"train.ratio_net": "shared-detached", "weighting.normalize": "batch"}],
                         ids=["separate-ema-bins", "shared-gan", "shared-detached-batch"])
def test_no_host_sync_between_logging_steps(tmp_path, monkeypatch, changes) -> None:
    """No tensor is read back to the host by bregzoo's code during a training step or the per-step non-finite
    watch; the watch's check reads once, at each logging step (every 3rd of 6 here)."""
    import bregzoo.train.loop as loop

    here, reads, checks = {"in_step": False}, [], []
    for name in READBACKS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if here["in_step"] and "site-packages" not in caller and "/torch/" not in caller:
                reads.append(f"{_name} at {caller}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)

    def watched(method):
        def run(*args, **kwargs):
            here["in_step"] = True
            try:
                return method(*args, **kwargs)
            finally:
                here["in_step"] = False
        return run
    monkeypatch.setattr(loop.Distiller, "train_step", watched(loop.Distiller.train_step))
    monkeypatch.setattr(loop.NonFiniteWatch, "observe", watched(loop.NonFiniteWatch.observe))
    check = loop.NonFiniteWatch.check
    monkeypatch.setattr(loop.NonFiniteWatch, "check", lambda self, acc: checks.append(1) or check(self, acc))

    result = train(tiny(tmp_path, **changes), check=False)
    assert reads == []
    assert len(checks) == 2  # steps 3 and 6
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in logged] == [3, 6]
    assert all(r["grad_norm_g"] > 0 and math.isfinite(r["loss_est"]) for r in logged)


def test_the_non_finite_watch_names_the_first_bad_step_and_its_terms() -> None:
    from accelerate import Accelerator

    watch, acc = NonFiniteWatch(), Accelerator(cpu=True)
    ok = {"loss_dm": torch.tensor(1.0), "loss_fake": torch.tensor(2.0), "grad_norm_g": torch.tensor(3.0)}
    watch.observe(ok, 1)
    assert watch.check(acc) is None
    watch.observe({**ok, "loss_fake": torch.tensor(float("inf"))}, 2)
    watch.observe({**ok, "loss_dm": torch.tensor(float("nan")), "loss_fake": torch.tensor(float("nan"))}, 3)
    assert watch.check(acc) == (2, ["loss_fake"])


def test_shared_estimator_resume_is_bitwise_identical(tmp_path) -> None:
    flat = {"optim.generator_decay": "none", "train.ratio_net": "shared", "train.steps": 4,
            "train.checkpoint_every": 2, "train.log_every": 2}
    full = train(tiny(tmp_path, "full", **flat), check=False).run_dir
    train(tiny(tmp_path, "half", **{**flat, "train.steps": 2}), check=False)
    resumed = train(tiny(tmp_path, "half", **flat), resume=True, check=False).run_dir
    for name in ("model.safetensors", "model_1.safetensors", "model_2.safetensors", "train_state.safetensors"):
        a, b = io.load_file(full / "checkpoints/step-0000004" / name), io.load_file(resumed / "checkpoints/step-0000004" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("changes", [
    {"train.ratio_net": "shared", "train.mixed_precision": "bf16", "train.grad_accum": 2},
    {"train.ratio_net": "shared-detached", "weighting.gan": 0.1, "train.mixed_precision": "bf16"},
    {"train.ratio_net": "shared", "train.fake_updates": 0},
], ids=["shared-bf16-accum", "detached-gan-bf16", "shared-no-fake-update"])
def test_shared_estimator_options_run_and_stay_finite(tmp_path, changes) -> None:
    result = train(tiny(tmp_path, **{"train.steps": 2, "train.log_every": 1, **changes}), check=False)
    w = io.load_file(result.run_dir / "generator.safetensors")
    assert all(torch.isfinite(v).all() for v in w.values())


@pytest.mark.slow
@pytest.mark.parametrize("ratio_net", ["separate", "shared"])
def test_compile_runs_on_cpu(tmp_path, ratio_net) -> None:
    """train.compile on a tiny config (inductor's CPU backend needs a C compiler; 20-40 s)."""
    result = train(tiny(tmp_path, **{"train.compile": True, "train.steps": 3, "train.ratio_net": ratio_net}),
                   check=False)
    w = io.load_file(result.run_dir / "generator.safetensors")
    assert all(torch.isfinite(v).all() for v in w.values())
    assert not any(k.startswith("_orig_mod") for k in w)  # compiled in place: the keys are the module's own


def test_a_run_checkpointed_before_ratio_net_existed_resumes_with_its_separate_estimator(tmp_path) -> None:
    """A checkpoint whose config predates train.ratio_net holds a separate estimator network; "auto" would
    build a head and fail to load it, so the resume keeps "separate" (rundir.LEGACY)."""
    from bregzoo.train import rundir

    old = tiny(tmp_path, "old", **{"train.ratio_net": "separate", "train.steps": 2, "train.checkpoint_every": 2})
    train(old, check=False)
    ckpt = tmp_path / "old" / "checkpoints" / "step-0000002" / "train_state.safetensors"
    ident = json.loads(io.read_metadata(ckpt)["config_identity"])
    del ident["train.ratio_net"]  # as written before the field existed
    text = json.dumps(ident, sort_keys=True)
    import hashlib

    io.save_file(io.load_file(ckpt), ckpt, metadata={**io.read_metadata(ckpt), "config_identity": text,
                                                    "config_sha256": hashlib.sha256(text.encode()).hexdigest()})
    resumed = RunConfig.load(tmp_path / "old").replace(**{"train.ratio_net": "auto", "train.steps": 3})
    assert rundir.with_legacy_defaults(tmp_path / "old", resumed).train.ratio_net == "separate"
    result = train(resumed, resume=True, check=False)
    assert result.steps == 3
    assert json.loads((tmp_path / "old" / "config.json").read_text())["ratio_net"] == "separate"


@pytest.mark.parametrize("changes", [{"train.ratio_net": "shared"}, {"train.ratio_net": "shared-detached"},
                                     {"train.ratio_net": "separate"},
                                     {"train.ratio_net": "shared", "train.fake_updates": 0}],
                         ids=["shared", "shared-detached", "separate", "shared-no-fake-update"])
def test_ref_fraction_gives_the_estimator_that_share_of_reference_samples(monkeypatch, changes) -> None:
    """train.ref_fraction=0.25 of a batch of 32: every estimator update sees 8 reference outputs beside 32
    student outputs, on each of its paths (one trunk pass, a reference trunk pass, a separate network)."""
    from accelerate import Accelerator

    cfg = RunConfig().replace(**{**TINY, "train.ref_fraction": 0.25, **changes})
    parts = build(cfg)
    seen = []
    loss = type(parts.estimator).loss
    monkeypatch.setattr(type(parts.estimator), "loss",
                        lambda self, ref, stu: seen.append((len(ref), len(stu))) or loss(self, ref, stu))
    d = Distiller(cfg, parts, Accelerator(cpu=True))
    logs = d.train_step(draw_step_noise(d.rng, parts, cfg, 1, 0))
    assert seen == [(8, 32)] and math.isfinite(float(logs["loss_est"]))


@pytest.mark.parametrize("fraction", [0.0, 1.5, 0.01])
def test_a_ref_fraction_outside_the_batch_is_refused_in_one_line(fraction) -> None:
    with pytest.raises(BregzooError, match="train.ref_fraction"):
        RunConfig().replace(**{"train.batch_size": 32, "train.ref_fraction": fraction})
