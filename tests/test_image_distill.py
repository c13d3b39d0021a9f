"""Image distillation end to end on tiny budgets: teach -> train --teacher DIR -> eval, and the DDPM/CIFAR path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bregzoo import io
from bregzoo.teach import TeachConfig, teach

TINY_UNET = "unet:channels=8,mults=1,blocks=1,attn=none"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teach") / "digits"
    return teach(TeachConfig(backbone=TINY_UNET, steps=3, batch_size=8, sampler_steps=2, checkpoint_every=3, out=str(out))).out


def invoke(*args: str):
    from bregzoo_cli.app import get_app

    return CliRunner().invoke(get_app(), [str(a) for a in args])


def test_train_with_a_teacher_directory_then_eval(tmp_path, teacher_dir):
    run = tmp_path / "run"
    res = invoke("train", "--teacher", teacher_dir, "--divergence", "lsif", "--steps", 2, "--batch-size", 8,
                 "--set", "eval.samples=16", "--set", "train.checkpoint_every=1", "--no-check", "-q", "--out", run)
    assert res.exit_code == 0, res.output
    cfg = json.loads((run / "config.json").read_text())
    # The directory's schedule, task, backbone and sampler settings are adopted; image metrics replace the 2-D ones.
    assert cfg["config"]["task"] == "digits" and cfg["config"]["schedule"] == "edm"
    assert cfg["config"]["teacher"] == f"bregzoo:path={str(teacher_dir)!r}"
    assert cfg["config"]["backbone"] == TINY_UNET and cfg["config"]["eval"]["teacher_steps"] == 2
    assert cfg["init_from_teacher"] is True
    assert (run / "samples.png").read_bytes()[:8] == PNG_MAGIC
    final = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    student = next(r for r in final if r["split"] == "final-student")
    assert {"fid", "kid", "precision", "recall"} <= set(student) and np.isfinite(student["fid"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "step-0000002"

    res = invoke("eval", run, "--metrics", "fid,kid", "-n", 24, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["kind"] == "student" and out["steps"] == 1 and out["n"] == 24 and out["dataset"] == "digits:split='test'"
    assert np.isfinite(out["metrics"]["fid"]) and "kid" in out["metrics"] and out["seconds_per_image"] > 0

    res = invoke("eval", teacher_dir, "--metrics", "fid", "-n", 12, "--steps", 3, "--sampler", "euler", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["kind"] == "teacher" and out["steps"] == 3 and out["nfe"] == 3 and np.isfinite(out["metrics"]["fid"])
    res = invoke("eval", teacher_dir, "-n", 12)  # the rich table
    assert res.exit_code == 0 and "precision" in res.output and "sampling s/image" in res.output


def test_teacher_directory_errors_are_one_line(tmp_path, teacher_dir):
    res = invoke("train", "--teacher", teacher_dir, "--schedule", "vp", "--dry-run")
    assert res.exit_code == 2 and "trained with --schedule edm" in res.output
    res = invoke("train", "--teacher", tmp_path / "missing", "--dry-run")
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "empty").mkdir()
    res = invoke("train", "--teacher", tmp_path / "empty", "--dry-run")
    assert res.exit_code == 2 and "neither" in res.output
    res = invoke("eval", teacher_dir, "--schedule", "vp")
    assert res.exit_code == 2 and "schedule" in res.output
    res = invoke("train", "--teacher", teacher_dir, "--task", "gmm8", "--no-check", "--steps", 1, "--out", tmp_path / "r")
    assert res.exit_code == 2 and "use --task digits" in res.output


def _tiny_ddpm_dir(root: Path) -> Path:
    """A diffusers-layout DDPM folder (config.json + diffusion_pytorch_model.safetensors) with random weights."""
    from bregzoo_zoo.ddpm_unet import DDPM_CIFAR10_CONFIG, DDPMUNet

    config = dict(DDPM_CIFAR10_CONFIG, block_out_channels=[32, 32, 32, 32], norm_num_groups=8, layers_per_block=1,
                  _class_name="UNet2DModel")
    torch.manual_seed(0)
    net = DDPMUNet({k: v for k, v in config.items() if not k.startswith("_")})
    root.mkdir(parents=True)
    io.write_json(root / "config.json", config)
    io.save_file(net.state_dict(), root / "diffusion_pytorch_model.safetensors")
    return root


def _fake_cifar_bin(folder: Path, n: int = 4) -> Path:
    rng = np.random.RandomState(0)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.concatenate([rng.randint(0, 10, (n, 1)), rng.randint(0, 256, (n, 3 * 32 * 32))], axis=1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())
    return folder


def test_ddpm_cifar_distillation_starts_and_checkpoints(tmp_path):
    teacher, data, run = _tiny_ddpm_dir(tmp_path / "ddpm"), _fake_cifar_bin(tmp_path / "cifar-10-batches-bin"), tmp_path / "run"
    res = invoke("train", "--divergence", "lsif", "--backbone", "ddpm-cifar", "--teacher", teacher, "--data", data,
                 "--steps", 2, "--batch-size", 2, "--set", "eval.samples=2", "--set", "eval.teacher_steps=2",
                 "--set", "train.checkpoint_every=1", "--set", "train.fake_updates=1", "--no-check", "-q", "--out", run)
    assert res.exit_code == 0, res.output
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["task"] == f"cifar10:root={str(data)!r}" and cfg["teacher"] == f"ddpm:path={str(teacher)!r}"
    assert cfg["backbone"] == f"ddpm-cifar:path={str(teacher)!r}"  # the generator starts from the checkpoint's weights
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-0000001", "step-0000002"]
    assert (run / "generator.safetensors").is_file() and (run / "samples.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((run / "config.json").read_text())["init_from_teacher"] is True
    gen = io.load_file(run / "generator.safetensors")
    start = io.load_file(teacher / "diffusion_pytorch_model.safetensors")
    moved = [k for k in start if not torch.equal(gen["net." + k], start[k])]
    assert moved  # two generator steps changed the weights it started from


def test_ddpm_generator_and_fake_start_as_the_teachers_function(tmp_path):
    from bregzoo.config import RunConfig
    from bregzoo.train.build import build

    teacher, data = _tiny_ddpm_dir(tmp_path / "ddpm"), _fake_cifar_bin(tmp_path / "cifar-10-batches-bin")
    cfg = RunConfig(task=f"cifar10:root={str(data)!r}", teacher=f"ddpm:path={str(teacher)!r}",
                    backbone=f"ddpm-cifar:path={str(teacher)!r}", schedule="vp")
    parts = build(cfg)
    assert parts.from_teacher
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0.05, 0.7])
    with torch.no_grad():
        want = parts.teacher.denoise(x, t)
        torch.testing.assert_close(parts.generator(x, t), want, rtol=0, atol=0)
        torch.testing.assert_close(parts.fake(x, t), want, rtol=0, atol=0)
    assert all(p.requires_grad for p in parts.generator.parameters())
    assert not any(p.requires_grad for p in parts.teacher.parameters())


@pytest.mark.slow
def test_full_size_ddpm_cifar_distillation_starts_and_checkpoints(tmp_path):
    """The published 35.7M-parameter layout (random weights), one step of batch 1 and a checkpoint (about 20 s, 1 GB of checkpoint)."""
    from bregzoo_zoo.ddpm_unet import DDPM_CIFAR10_CONFIG, DDPMUNet

    teacher = tmp_path / "ddpm"
    teacher.mkdir()
    torch.manual_seed(0)
    io.write_json(teacher / "config.json", dict(DDPM_CIFAR10_CONFIG, _class_name="UNet2DModel"))
    io.save_file(DDPMUNet(dict(DDPM_CIFAR10_CONFIG)).state_dict(), teacher / "diffusion_pytorch_model.safetensors")
    data, run = _fake_cifar_bin(tmp_path / "cifar-10-batches-bin"), tmp_path / "run"
    res = invoke("train", "--divergence", "lsif", "--backbone", "ddpm-cifar", "--teacher", teacher, "--data", data,
                 "--steps", 1, "--batch-size", 1, "--set", "eval.samples=2", "--set", "eval.teacher_steps=1",
                 "--set", "train.fake_updates=1", "--no-check", "-q", "--out", run)
    assert res.exit_code == 0, res.output
    assert (run / "checkpoints" / "step-0000001").is_dir() and (run / "generator.safetensors").is_file()
    assert sum(v.numel() for v in io.load_file(run / "generator.safetensors").values()) >= 35_746_307
