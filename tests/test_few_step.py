"""k-step students (DMD2's multi-step schedule): the chain, backward simulation, training, CLI round trips."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from bregzoo import BregzooError, io
from bregzoo.config import RunConfig
from bregzoo.schedules import make_schedule
from bregzoo.teacher import per_sample
from bregzoo.train import load_student, train
from bregzoo.train.build import build, resolve
from bregzoo.train.loop import draw_step_noise
from bregzoo.train.sampler import generate, simulate, student_times
from bregzoo_cli.app import get_app

pytestmark = pytest.mark.usefixtures("one_thread")

EDM = make_schedule("edm", t_min=0.02, t_max=3.0)
TINY = {"backbone": "mlp:width=16,depth=1", "train.steps": 4, "train.batch_size": 16, "train.log_every": 1,
        "train.eval_every": 2, "train.checkpoint_every": 1000, "eval.samples": 100, "eval.metrics": ["mode-recall"],
        "eval.final_metrics": ["mode-recall", "mmd"], "eval.teacher_steps": 4}


def tiny(tmp_path, name="run", **changes) -> RunConfig:
    return RunConfig().replace(out=str(tmp_path / name), **{**TINY, **changes})


def one_step_before(generator: nn.Module, schedule, eps: torch.Tensor) -> torch.Tensor:
    """``generate`` as it was before k-step students (revision b89f75c): the reference for k = 1."""
    t = torch.full((eps.shape[0],), schedule.t_max, dtype=torch.float32, device=eps.device)
    return generator(per_sample(schedule.sigma(t).to(eps.dtype), eps) * eps, t)


class Recorder(nn.Module):
    """A generator that records its inputs and returns a fixed function of them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), t.clone()))
        return 0.5 * x + per_sample(t, x)


# -- the noise levels ------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [EDM, make_schedule("vp"), make_schedule("edm")])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_default_levels_start_at_t_max_decrease_and_stay_above_t_min(schedule, k) -> None:
    times = student_times(schedule, k)
    assert len(times) == k and times[0] == schedule.t_max  # exactly: the one-step student's level
    assert all(a > b for a, b in zip(times, times[1:])) and times[-1] > schedule.t_min


def test_explicit_levels_are_kept_and_bad_ones_refused() -> None:
    assert student_times(EDM, 2, [3.0, 0.5]) == (3.0, 0.5)
    for times, needle in [([3.0, 3.0], "strictly decreasing"), ([0.5, 2.0], "strictly decreasing"),
                          ([5.0, 1.0], "within the schedule's [t_min, t_max] = [0.02, 3.0]"),
                          ([3.0, 0.01], "within the schedule"), ([3.0], "has 1 levels but train.student_steps is 2")]:
        with pytest.raises(BregzooError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            student_times(EDM, 2, times)
    with pytest.raises(BregzooError, match="student_steps must be >= 1"):
        student_times(EDM, 0)


@pytest.mark.parametrize("changes, needle", [
    ({"train.student_steps": 0}, "train.student_steps must be >= 1"),
    ({"train.student_steps": -2}, "train.student_steps must be >= 1"),
    ({"train.student_steps": 2, "train.student_times": [1.0, 2.0]}, "strictly decreasing"),
    ({"train.student_steps": 2, "train.student_times": [1.0]}, "has 1 levels but train.student_steps is 2"),
    ({"train.student_times": [-1.0]}, "finite noise levels > 0"),
])
def test_config_refuses_bad_steps_and_levels(changes, needle) -> None:
    with pytest.raises(BregzooError, match=needle):
        RunConfig().replace(**changes)


def test_levels_outside_the_schedule_are_refused_before_training() -> None:
    cfg = RunConfig().replace(**{"train.student_steps": 2, "train.student_times": [10.0, 1.0]})  # t_max is 3
    with pytest.raises(BregzooError, match=r"within the schedule's \[t_min, t_max\] = \[0.02, 3.0\]"):
        resolve(cfg)
    assert RunConfig.from_toml(cfg.to_toml()) == cfg == RunConfig.from_dict(json.loads(cfg.to_json()))


# -- the chain -------------------------------------------------------------------------------------

def test_one_step_is_bit_identical_to_the_one_step_student_before() -> None:
    torch.manual_seed(0)
    parts = build(RunConfig().replace(backbone="mlp:width=16,depth=1"))
    gen, sched = parts.generator.eval(), parts.schedule
    eps = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = one_step_before(gen, sched, eps)
        assert torch.equal(generate(gen, sched, eps), before)
        assert torch.equal(generate(gen, sched, eps[:, None], student_times(sched, 1)), before)
        x, t = simulate(gen, sched, eps[:, None], student_times(sched, 1), torch.zeros(64, dtype=torch.long))
        assert torch.equal(gen(x, t), before)


def test_the_chain_applies_the_generator_at_each_level_and_renoises_in_between() -> None:
    for schedule, shape in [(EDM, (2,)), (make_schedule("vp"), (1, 4, 4))]:  # vectors and images; alpha = 1 and not
        times = student_times(schedule, 3)
        eps = torch.randn(5, 3, *shape)
        g = Recorder()
        x0 = generate(g, schedule, eps, times)
        assert x0.shape == (5, *shape) and len(g.calls) == 3
        assert torch.equal(g.calls[0][0], schedule.sigma(torch.tensor(times[0])) * eps[:, 0])  # pure noise at t_1
        for i, (x, t) in enumerate(g.calls):
            assert x.shape == (5, *shape) and torch.equal(t, torch.full((5,), times[i]))
        for i in (1, 2):  # x at t_{i+1} = alpha x0 + sigma fresh noise, x0 the previous output
            prev_x, prev_t = g.calls[i - 1]
            level = torch.full((5,), times[i])
            expect = (per_sample(schedule.alpha(level), prev_x) * (0.5 * prev_x + per_sample(prev_t, prev_x))
                      + per_sample(schedule.sigma(level), prev_x) * eps[:, i])
            torch.testing.assert_close(g.calls[i][0], expect)
    with pytest.raises(ValueError, match=r"shape \(B, 3, \.\.\.\)"):
        generate(Recorder(), EDM, torch.randn(5, 2, 2), student_times(EDM, 3))


def test_backward_simulation_gives_each_sample_its_chain_input_at_its_level() -> None:
    times = student_times(EDM, 4)
    eps = torch.randn(8, 4, 2)
    index = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    full = Recorder()
    generate(full, EDM, eps, times)
    g = Recorder()
    x, t = simulate(g, EDM, eps, times, index)
    assert torch.equal(t, torch.tensor(times, dtype=torch.float32)[index])
    for b, i in enumerate(index.tolist()):
        torch.testing.assert_close(x[b], full.calls[i][0][b])
    # only the samples further down the chain are pushed through each step: 6, 4, then 2 rows
    assert [len(c[0]) for c in g.calls] == [6, 4, 2]
    x_none, t_none = simulate(g, EDM, eps, times)
    assert torch.equal(t_none, torch.full((8,), 3.0)) and torch.equal(x_none, 3.0 * eps[:, 0])


# -- training --------------------------------------------------------------------------------------

def test_the_step_noise_of_k_steps_carries_k_draws_and_a_level_per_sample_and_k1_draws_as_before(tmp_path) -> None:
    cfg = tiny(tmp_path)
    parts = build(cfg)
    one = draw_step_noise(torch.Generator().manual_seed(0), parts, cfg, 1, 0)
    assert "idx" not in one["gen"] and one["gen"]["eps"].shape == (1, 16, 1, 2)
    # k = 1 replays the stream drawn before k-step students: eps (n, 2), t, z, ...
    rng = torch.Generator().manual_seed(0)
    eps, t = torch.randn(16, 2, generator=rng), parts.schedule.sample_t(16, generator=rng)
    assert torch.equal(one["gen"]["eps"][0, :, 0], eps) and torch.equal(one["gen"]["t"][0], t)
    cfg4 = tiny(tmp_path, **{"train.student_steps": 4})
    four = draw_step_noise(torch.Generator().manual_seed(0), parts, cfg4, 1, 0)
    for draw in (four["gen"], four["est"], *four["fake"]):
        assert draw["eps"].shape == (1, 16, 4, 2) and draw["idx"].shape == (1, 16)
        assert 0 <= int(draw["idx"].min()) and int(draw["idx"].max()) < 4


def test_k_step_noise_tiles_across_processes_and_accumulation_matches_the_full_batch(tmp_path) -> None:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from bregzoo.train.loop import Distiller

    cfg = tiny(tmp_path, divergence="lsif", **{"train.student_steps": 3, "weighting.gan": 0.1, "train.fake_updates": 2})
    parts = build(cfg)
    one = draw_step_noise(torch.Generator().manual_seed(5), parts, cfg.replace(**{"train.batch_size": 32}), 1, 0)
    two = [draw_step_noise(torch.Generator().manual_seed(5), parts, cfg, 2, r) for r in (0, 1)]
    for key in ("eps", "idx", "t", "z"):  # each process keeps its slice of the same global draw
        assert torch.equal(one["gen"][key], torch.cat([two[0]["gen"][key], two[1]["gen"][key]], dim=1))

    def params_after(c: RunConfig) -> dict[str, torch.Tensor]:
        acc = Accelerator(cpu=True)
        p = build(c)
        d = Distiller(c, p, acc)
        for _ in range(2):
            d.train_step(draw_step_noise(d.rng, p, c, 1, 0))
        AcceleratorState._reset_state(reset_partial_state=True)
        return {f"{n}.{k}": v.clone() for n, m in (("gen", p.generator), ("fake", p.fake), ("ratio", p.ratio))
                for k, v in m.state_dict().items()}

    full = params_after(cfg.replace(**{"train.batch_size": 32}))
    accum = params_after(cfg.replace(**{"train.batch_size": 16, "train.grad_accum": 2}))
    assert max(float((full[k] - accum[k]).abs().max()) for k in full) < 1e-6


@pytest.mark.parametrize("k, divergence", [(2, "reverse-kl"), (4, "lsif")])
def test_a_k_step_student_trains_ships_and_samples_with_its_k(tmp_path, k, divergence) -> None:
    cfg = tiny(tmp_path, divergence=divergence, **{"train.student_steps": k})
    result = train(cfg, check=False)
    assert result.student_steps == k
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in records if r["split"] == "train"]
    assert len(train_rows) == 4 and all(torch.isfinite(torch.tensor(r["loss_dm"])) for r in train_rows)
    assert {"student", "final-student"} <= {r["split"] for r in records}
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["config"]["train"]["student_steps"] == k
    assert config["student_times"] == list(student_times(make_schedule("edm", t_min=0.02, t_max=3.0), k))
    meta = io.read_metadata(result.run_dir / "generator.safetensors")
    assert int(meta["student_steps"]) == k and json.loads(meta["student_times"]) == config["student_times"]
    student = load_student(result.run_dir)
    assert student.steps == k and list(student.times) == config["student_times"]
    x = student.sample(30, seed=1)
    assert x.shape == (30, 2) and torch.isfinite(x).all()
    # the sample is the whole k-step chain from the (n, k, 2) noise of the seed
    with torch.no_grad():
        chain = generate(student.generator, student.schedule,
                         torch.randn(30, k, 2, generator=torch.Generator().manual_seed(1)), student.times)
    assert torch.equal(x, chain)


def test_evaluation_during_training_uses_the_k_step_chain(tmp_path, monkeypatch) -> None:
    import bregzoo.train.loop as loop

    seen = []
    real = loop.generate

    def spy(generator, schedule, eps, times=None):
        seen.append((tuple(eps.shape), tuple(times)))
        return real(generator, schedule, eps, times)

    monkeypatch.setattr(loop, "generate", spy)
    train(tiny(tmp_path, **{"train.student_steps": 3, "train.steps": 2, "train.eval_every": 1}), check=False)
    times = student_times(EDM, 3)
    assert seen and all(s == ((100, 3, 2), times) for s in seen)  # every eval of the EMA student: 3 levels


def test_a_generator_file_from_before_k_step_students_loads_as_one_step(tmp_path) -> None:
    result = train(tiny(tmp_path, **{"train.steps": 1}), check=False)
    path = result.run_dir / "generator.safetensors"
    meta = {k: v for k, v in io.read_metadata(path).items() if not k.startswith("student_")}
    old = tmp_path / "old.safetensors"
    io.save_file(io.load_file(path), old, metadata=meta)
    assert load_student(old).times == (3.0,)
    assert torch.equal(load_student(old).sample(20), load_student(path).sample(20))
    io.save_file(io.load_file(path), old, metadata={**meta, "student_times": "[0.5, 2.0]"})
    with pytest.raises(BregzooError, match="the stored student_times '\\[0.5, 2.0\\]' are not the noise levels"):
        load_student(old)


# -- the command line ------------------------------------------------------------------------------

runner = CliRunner()
CLI_TINY = ["--steps", "2", "--batch-size", "16", "--backbone", "mlp:width=16,depth=1", "--set", "eval.samples=100",
            "--set", "eval.teacher_steps=4", "--set", 'eval.final_metrics=["mode-recall"]', "--no-check", "-q"]


def invoke(*args):
    return runner.invoke(get_app(), [str(a) for a in args], env={"COLUMNS": "160"})


def test_student_steps_round_trips_through_the_cli_config_and_the_generator(tmp_path) -> None:
    dry = invoke("train", "--student-steps", "4", "--dry-run")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["train"]["student_steps"] == 4
    out = tmp_path / "run"
    res = invoke("train", *CLI_TINY, "--student-steps", "2", "--set", "train.student_times=[3.0,0.5]", "--out", out)
    assert res.exit_code == 0, res.output
    cfg = RunConfig.load(out)
    assert (cfg.train.student_steps, cfg.train.student_times) == (2, (3.0, 0.5))
    meta = io.read_metadata(out / "generator.safetensors")
    assert (meta["student_steps"], json.loads(meta["student_times"])) == ("2", [3.0, 0.5])

    # sample and eval read the stored k, with no flag
    res = invoke("sample", out, "-n", "40", "--seed", "7", "--out", tmp_path / "x.pt")
    assert res.exit_code == 0 and "2-step student" in res.output, res.output
    x = torch.load(tmp_path / "x.pt", weights_only=True)
    assert torch.equal(x, load_student(out).sample(40, seed=7))
    res = invoke("eval", out, "-n", "100", "--json")
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["steps"], json.loads(res.stdout)["nfe"]) == (2, 2)
    table = invoke("eval", out, "-n", "100")
    assert table.exit_code == 0 and "student, 2 steps" in table.output
    res = invoke("eval", out, "--steps", "4")
    assert res.exit_code == 2 and "samples with the steps it was trained with" in res.output

    res = invoke("train", "--resume", out, "--student-steps", "4")
    assert res.exit_code == 2 and "cannot change train.student_steps when resuming" in res.output


@pytest.mark.parametrize("args, needle", [
    (["--student-steps", "0"], "train.student_steps must be >= 1"),
    (["--student-steps", "2", "--set", "train.student_times=[0.5,1.0]"], "strictly decreasing"),
    (["--student-steps", "2", "--set", "train.student_times=[3.0]"], "has 1 levels"),
    (["--student-steps", "2", "--set", "train.student_times=[5.0,1.0]"], "within the schedule's"),
])
def test_bad_student_steps_are_one_line_errors(tmp_path, args, needle) -> None:
    res = invoke("train", *args, "--dry-run")
    assert res.exit_code == 2 and needle in res.output, res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
