"""The distillation loop on tiny budgets: the run directory, bitwise resume, student loading."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from bregzoo import BregzooError, io
from bregzoo.config import RunConfig
from bregzoo.train import load_student, train

TINY = {
    "backbone": "mlp:width=16,depth=1", "schedule": "edm:t_min=0.02,t_max=10.0",
    "train.steps": 6, "train.batch_size": 32, "train.log_every": 2, "train.eval_every": 3,
    "train.checkpoint_every": 3, "train.keep_checkpoints": 5, "train.fake_updates": 1,
    "eval.samples": 200, "eval.metrics": ["mode-recall"], "eval.final_metrics": ["mode-recall", "mmd"],
    "eval.teacher_steps": 12,
}


def tiny(tmp_path, name="run", **changes) -> RunConfig:
    return RunConfig().replace(out=str(tmp_path / name), **{**TINY, **changes})


def weights(path) -> dict[str, torch.Tensor]:
    return io.load_file(path)


def test_tiny_run_writes_the_run_directory(tmp_path) -> None:
    result = train(tiny(tmp_path), check=False)
    root = result.run_dir
    for name in ("config.json", "metrics.jsonl", "generator.safetensors", "samples.png"):
        assert (root / name).is_file(), name
    assert (root / "checkpoints" / "step-0000006" / "train_state.safetensors").is_file()
    assert any((root / "tb").rglob("events.out.tfevents.*"))
    usual = (root / "generator.safetensors").stat().st_mode & 0o777  # every file of a run: the umask's mode
    assert {p.name: p.stat().st_mode & 0o777 for p in (root / "checkpoints").rglob("*.safetensors")} == {
        p.name: usual for p in (root / "checkpoints").rglob("*.safetensors")}
    config = json.loads((root / "config.json").read_text())
    assert RunConfig.from_dict(config["config"]) == tiny(tmp_path)
    assert config["components"]["divergence"]["dist"] == "bregzoo"
    assert config["components"]["task"]["name"] == "gmm8"
    # the weighting the run trained with, "auto" resolved (reverse-kl: DMD, nothing to tame)
    assert (config["weighting"]["normalize"], config["weighting"]["warmup"]) == ("none", 0)
    records = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]
    assert {r["split"] for r in records} == {"teacher", "exact", "train", "student", "final-student", "final-teacher"}
    assert all(torch.isfinite(torch.tensor(r["loss_dm"])) for r in records if r["split"] == "train")
    assert set(result.student) == {"mode_recall", "modes_covered", "mmd2", "mmd2_b"}
    assert set(result.exact) == set(result.student)  # the task's exact samples, the metrics' noise floor
    assert result.exact["mode_recall"] == 1.0 and 0 < result.exact["mmd2_b"] < 0.01
    assert result.teacher["mode_recall"] == 1.0  # the exact teacher's 12-step Heun sampler keeps every mode


def test_the_shipped_student_reloads_from_its_own_metadata(tmp_path) -> None:
    result = train(tiny(tmp_path, **{"train.steps": 2}), check=False)
    student = load_student(result.run_dir)
    assert student.step == 2 and student.config == tiny(tmp_path, **{"train.steps": 2})
    x = student.sample(50, seed=1)
    assert x.shape == (50, 2) and torch.isfinite(x).all()
    assert torch.equal(x, load_student(result.run_dir / "generator.safetensors").sample(50, seed=1))


def test_resume_is_bitwise_identical(tmp_path) -> None:
    # A constant learning rate: the cosine decay is a function of the total steps, so a run *asked*
    # for 3 steps follows another schedule (a run killed at step 3 resumes bitwise: the next test).
    flat = {"optim.generator_decay": "none"}
    full = train(tiny(tmp_path, "full", **flat), check=False).run_dir
    # Interrupted: the same run stops at step 3 (its checkpoint), then --resume continues to 6.
    half = train(tiny(tmp_path, "half", **{"train.steps": 3, **flat}), check=False).run_dir
    resumed = train(tiny(tmp_path, "half", **flat), resume=True, check=False).run_dir
    for name in ("model.safetensors", "model_1.safetensors", "model_2.safetensors", "train_state.safetensors"):
        a, b = weights(full / "checkpoints/step-0000006" / name), weights(resumed / "checkpoints/step-0000006" / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    a, b = weights(full / "generator.safetensors"), weights(half / "generator.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The metrics log continues without duplicates (the short run also logged its last step, 3).
    steps = [json.loads(x)["step"] for x in (half / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["split"] == "train"]
    assert steps == [2, 3, 4, 6]


def test_resume_after_a_kill_uses_the_latest_checkpoint(tmp_path) -> None:
    full = train(tiny(tmp_path, "full"), check=False).run_dir
    killed = tmp_path / "killed"
    shutil.copytree(full, killed)
    # As if killed between the step-3 checkpoint and the end.
    shutil.rmtree(killed / "checkpoints/step-0000006")
    (killed / "generator.safetensors").unlink()
    train(tiny(tmp_path, "killed"), resume=True, check=False)
    a, b = weights(full / "generator.safetensors"), weights(killed / "generator.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_different_seeds_differ(tmp_path) -> None:
    a = train(tiny(tmp_path, "a", **{"train.steps": 2}), check=False).run_dir
    b = train(tiny(tmp_path, "b", **{"train.steps": 2, "train.seed": 1}), check=False).run_dir
    wa, wb = weights(a / "generator.safetensors"), weights(b / "generator.safetensors")
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_out_dir_rules(tmp_path) -> None:
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(BregzooError, match="not a bregzoo run directory"):
        train(tiny(tmp_path, "notes", **{"train.steps": 1}), check=False)
    train(tiny(tmp_path, "notes", **{"train.steps": 1}), check=False, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine" and (other / "generator.safetensors").is_file()
    # An earlier bregzoo run is never replaced by a repeated command: only with overwrite.
    before = (other / "generator.safetensors").read_bytes()
    with pytest.raises(BregzooError, match="already holds a bregzoo run .finished, last checkpoint at step 1.*--resume"):
        train(tiny(tmp_path, "notes", **{"train.steps": 1}), check=False)
    assert (other / "generator.safetensors").read_bytes() == before
    train(tiny(tmp_path, "notes", **{"train.steps": 1}), check=False, overwrite=True)
    with pytest.raises(BregzooError, match="not a bregzoo run directory"):
        train(tiny(tmp_path, "fresh"), resume=True, check=False)


@pytest.mark.parametrize("changes", [
    {"weighting.normalize": "batch", "divergence": "lsif", "weighting.clamp": 3.0},
    {"weighting.normalize": "ema-bins", "divergence": "power:alpha=0.5", "weighting.gan": 0.1},
    {"train.grad_accum": 2, "train.ema": 0.0, "estimator": "lsif", "train.fake_warmup": 2},
    {"schedule": "vp", "train.mixed_precision": "bf16", "optim.generator_decay": "cosine"},
    {"divergence": "neyman", "weighting.warmup": 1},  # auto weighting, past its ramp at step 2
])
def test_options_run_and_stay_finite(tmp_path, changes) -> None:
    result = train(tiny(tmp_path, **{"train.steps": 2, **changes}), check=False)
    w = weights(result.run_dir / "generator.safetensors")
    assert all(torch.isfinite(v).all() for v in w.values())


def test_failed_claim_stops_the_run_unless_forced(tmp_path, monkeypatch) -> None:
    import bregzoo.train.loop as loop

    bad = [{"claim": "weight-closed-form", "subject": "reverse-kl", "passed": False, "detail": "injected"}]
    monkeypatch.setattr(loop, "run_claim_checks", lambda div, est: bad)
    with pytest.raises(BregzooError, match="weight-closed-form.*--force"):
        train(tiny(tmp_path, **{"train.steps": 1}))
    assert not (tmp_path / "run").exists()  # stopped before writing anything
    result = train(tiny(tmp_path, **{"train.steps": 1}), force=True)
    assert json.loads((result.run_dir / "config.json").read_text())["checks"] == bad


@pytest.mark.parametrize("divergence, gan, trained", [("reverse-kl", 0.0, False), ("ukl", 0.0, False),
                                                      ("reverse-kl", 0.2, True), ("lsif", 0.0, True)])
def test_the_estimator_is_trained_only_when_its_ratio_is_used(tmp_path, divergence, gan, trained) -> None:
    result = train(tiny(tmp_path, divergence=divergence, **{"train.steps": 2, "weighting.gan": gan}), check=False)
    assert json.loads((result.run_dir / "config.json").read_text())["estimator_trained"] is trained
    last = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(x)["split"] == "train"][-1]
    assert ("loss_est" in last) is trained


def test_mlp_fourier_features_keep_the_backbone_contract() -> None:
    from bregzoo import create_backbone

    net = create_backbone("mlp:width=16,fourier=8", data_shape=(2,))
    scalar = create_backbone("mlp", data_shape=(2,), scalar_output=True, width=16, fourier=8, fourier_scale=2.0)
    x, c = torch.randn(5, 2), torch.randn(5)
    assert net(x, c).shape == (5, 2) and scalar(x, c).shape == (5,)
    assert net.state_dict()["freqs"].shape == (2, 8)  # fixed, seeded, saved with the weights
    assert torch.equal(net.freqs, create_backbone("mlp:width=16,fourier=8", data_shape=(2,)).freqs)
    with pytest.raises(BregzooError, match="fourier"):
        create_backbone("mlp:fourier=-1", data_shape=(2,))
    assert "freqs" not in create_backbone("mlp:width=16", data_shape=(2,)).state_dict()  # old checkpoints load


def test_auto_weighting_is_recorded_in_config_json(tmp_path) -> None:
    result = train(tiny(tmp_path, divergence="lsif", **{"train.steps": 2}), check=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["config"]["weighting"]["normalize"] == "auto"  # what the user asked for
    assert {k: config["weighting"][k] for k in ("normalize", "truncate", "warmup", "estimator_lr_scale")} == {
        "normalize": "ema-bins", "truncate": 1.5, "warmup": 500, "estimator_lr_scale": 3.0}  # what the run used (lsif grows like r)
    result = train(tiny(tmp_path / "kl", divergence="kl", **{"train.steps": 2}), check=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert {k: config["weighting"][k] for k in ("truncate", "estimator_lr_scale")} == {
        "truncate": 2.0, "estimator_lr_scale": 1.0}  # kl's weight 1/r does not grow with r


def test_ema_update_is_the_per_tensor_formula_after_moves_and_reloads() -> None:
    """EMA lists the model's parameters once; the update must stay shadow <- d shadow + (1 - d) model for every
    tensor after the model's data is moved (.to) or reloaded in place, and buffers are copied each step."""
    from bregzoo.train.ema import EMA

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(model, 0.9)
    ref = {k: v.clone() for k, v in ema.shadow.state_dict().items()}
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        if step == 1:
            model.to(torch.float64).to(torch.float32)  # replaces each parameter's data and each buffer
        if step == 2:
            model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
        model.train()(torch.randn(8, 3))  # moves the batch-norm running statistics (buffers)
        ema.update(model, step)
        d = min(0.9, (1 + step) / (10 + step))
        now = model.state_dict()
        for k in ref:
            ref[k] = now[k].clone() if k.endswith(("running_mean", "running_var", "num_batches_tracked")) \
                else d * ref[k] + (1 - d) * now[k]
        got = ema.shadow.state_dict()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-6, atol=1e-6, msg=f"{k} at step {step}")
