"""A one-step generator with extra latent coordinates (train.extra_latent): shapes, training, shipping, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from bregzoo import BregzooError, io
from bregzoo.config import RunConfig
from bregzoo.networks import Denoiser, LatentDenoiser
from bregzoo.train import load_student, train
from bregzoo.train.build import build, latent_shape
from bregzoo.train.loop import draw_step_noise
from bregzoo_cli.app import get_app

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"backbone": "mlp:width=16,depth=1", "train.steps": 3, "train.batch_size": 16, "train.log_every": 1,
        "train.eval_every": 2, "train.checkpoint_every": 1000, "eval.samples": 100, "eval.metrics": ["mode-recall"],
        "eval.final_metrics": ["mode-recall", "mmd"], "eval.teacher_steps": 4}


def test_the_config_round_trips_and_is_off_by_default() -> None:
    assert RunConfig().train.extra_latent == 0
    cfg = RunConfig().replace(**{"train.extra_latent": 6})
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert RunConfig.from_toml(cfg.to_toml()) == cfg


@pytest.mark.parametrize("changes, needle", [
    ({"train.extra_latent": -1}, "train.extra_latent must be >= 0"),
    ({"train.extra_latent": 2, "train.student_steps": 2}, "is for one-step students"),
])
def test_bad_extra_latent_is_refused(changes, needle) -> None:
    with pytest.raises(BregzooError, match=needle):
        RunConfig().replace(**changes)


def test_the_generator_reads_the_whole_latent_and_writes_the_data_shape() -> None:
    assert latent_shape((2,), 6) == (8,) and latent_shape((3, 8, 8), 1) == (4, 8, 8) and latent_shape((2,)) == (2,)
    parts = build(RunConfig().replace(**{**TINY, "train.extra_latent": 6}))
    g = parts.generator
    assert isinstance(g, LatentDenoiser) and parts.latent_shape == (8,)
    assert isinstance(parts.fake, Denoiser) and not isinstance(parts.fake, LatentDenoiser)  # fake and estimator unchanged
    x, t = torch.randn(5, 8), torch.full((5,), 3.0)
    out = g(x, t)
    assert out.shape == (5, 2)
    x2 = x.clone()
    x2[:, 2:] = torch.randn(5, 6)
    assert not torch.allclose(g(x2, t), out)  # the extra coordinates reach the output
    assert build(RunConfig().replace(**TINY)).latent_shape == (2,)


def test_the_step_noise_has_the_latent_shape_and_the_default_draws_as_before() -> None:
    base = RunConfig().replace(**TINY)
    wide = base.replace(**{"train.extra_latent": 3})
    a = draw_step_noise(torch.Generator().manual_seed(0), build(base), base, 1, 0)
    b = draw_step_noise(torch.Generator().manual_seed(0), build(wide), wide, 1, 0)
    assert a["gen"]["eps"].shape == (1, 16, 1, 2) and b["gen"]["eps"].shape == (1, 16, 1, 5)
    assert b["est"]["z"].shape == a["est"]["z"].shape == (1, 16, 2)  # diffusion noise stays in the data's shape


def test_a_student_with_extra_latent_trains_ships_and_samples(tmp_path) -> None:
    out = tmp_path / "run"
    cfg = RunConfig().replace(out=str(out), divergence="kl", **{**TINY, "train.extra_latent": 4})
    result = train(cfg, check=False)
    assert 0 <= result.student["mode_recall"] <= 1
    assert RunConfig.load(out).train.extra_latent == 4
    assert io.read_metadata(out / "generator.safetensors")["extra_latent"] == "4"
    student = load_student(out)
    assert student.latent_shape == (6,) and student.data_shape == (2,)
    x = student.sample(40, seed=7)
    assert x.shape == (40, 2) and torch.isfinite(x).all()
    res = CliRunner().invoke(get_app(), ["sample", str(out), "-n", "40", "--seed", "7", "--out", str(tmp_path / "x.pt")])
    assert res.exit_code == 0, res.output
    assert torch.equal(torch.load(tmp_path / "x.pt", weights_only=True), x)
    res = CliRunner().invoke(get_app(), ["eval", str(out), "-n", "100", "--json"])
    assert res.exit_code == 0, res.output
