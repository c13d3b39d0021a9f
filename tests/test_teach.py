"""bregzoo teach: a teacher directory that loads back, bitwise resume, the schedule guard, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from bregzoo import BregzooError, create_dataset, create_teacher, io
from bregzoo.schedules import EDMSchedule, VPSchedule
from bregzoo.teach import TeachConfig, resume_config, teach
from bregzoo.teacher_dir import load_teacher_dir

TINY = dict(backbone="unet:channels=8,mults=1,blocks=1,attn=none", batch_size=8, steps=4, checkpoint_every=2,
            keep_checkpoints=5, sampler_steps=2, log_every=1, lr_warmup=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(tmp_path, name="teacher", **changes) -> TeachConfig:
    return TeachConfig(**{**TINY, **changes}, out=str(tmp_path / name))


def test_teach_writes_a_loadable_teacher_directory(tmp_path):
    result = teach(tiny(tmp_path))
    root = result.out
    for name in ("config.json", "teacher.safetensors", "teacher_raw.safetensors", "samples.png", "metrics.jsonl"):
        assert (root / name).is_file(), name
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    cfg = json.loads((root / "config.json").read_text())
    assert cfg["schedule"] == "edm" and cfg["sampler"] == {"method": "heun", "steps": 2} and cfg["step"] == 4
    assert cfg["data_shape"] == [1, 8, 8] and cfg["sigma_data"] == pytest.approx(create_dataset("digits").std)
    assert [json.loads(ln)["step"] for ln in (root / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]

    teacher = create_teacher(f"bregzoo:path='{root}'", dataset=create_dataset("digits"), schedule=EDMSchedule())
    saved = io.load_file(root / "teacher.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in teacher.denoiser.state_dict().items())
    raw = io.load_file(root / "teacher_raw.safetensors")
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)  # the EMA is not the raw network
    x, t = torch.randn(5, 1, 8, 8), torch.full((5,), 1.0)
    assert teacher.denoise(x, t).shape == (5, 1, 8, 8)
    assert torch.isfinite(teacher.sample(4, steps=2)).all()


def test_resume_is_bitwise_the_uninterrupted_run(tmp_path):
    straight = teach(tiny(tmp_path, "straight")).out
    first = teach(tiny(tmp_path, "resumed", steps=2)).out
    resumed = teach(resume_config(first, steps=4), resume=True).out
    for name in ("teacher.safetensors", "teacher_raw.safetensors", "checkpoints/step-0000004/state.safetensors"):
        a, b = io.load_file(straight / name), io.load_file(resumed / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    log = lambda root: [json.loads(ln) for ln in (root / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert log(straight) == log(resumed)


def test_the_schedule_must_be_the_teachers(tmp_path):
    root = teach(tiny(tmp_path, steps=1, schedule="vp", checkpoint_every=1)).out
    with pytest.raises(BregzooError, match="schedule 'vp'"):
        load_teacher_dir(root, EDMSchedule())
    assert load_teacher_dir(root, VPSchedule()).schedule == VPSchedule()


def test_wrong_directories_are_user_errors(tmp_path):
    with pytest.raises(BregzooError, match="does not exist"):
        load_teacher_dir(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    with pytest.raises(BregzooError, match="not a teacher directory"):
        load_teacher_dir(tmp_path / "other")
    with pytest.raises(BregzooError, match="not a bregzoo teacher directory"):
        teach(tiny(tmp_path, "other"))
    with pytest.raises(BregzooError, match="needs its directory"):
        create_teacher("bregzoo", dataset=create_dataset("digits"), schedule=EDMSchedule())


def test_cli_teach_resume_and_refusals(tmp_path):
    from bregzoo_cli.app import get_app

    runner, out = CliRunner(), tmp_path / "t"
    args = ["teach", "--backbone", TINY["backbone"], "--steps", "2", "--batch-size", "8", "--sampler-steps", "2",
            "--checkpoint-every", "1", "--out", str(out), "-q"]
    res = runner.invoke(get_app(), [*args, "--dry-run"])
    assert res.exit_code == 0 and json.loads(res.output)["steps"] == 2
    res = runner.invoke(get_app(), args)
    assert res.exit_code == 0, res.output
    assert "2 steps" in res.output and (out / "teacher.safetensors").is_file()
    res = runner.invoke(get_app(), ["teach", "--resume", str(out), "--steps", "3", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["step"] == 3
    res = runner.invoke(get_app(), ["teach", "--resume", str(out), "--lr", "1e-2"])
    assert res.exit_code == 2 and "only --steps" in res.output
