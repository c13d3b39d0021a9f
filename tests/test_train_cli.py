"""`bregzoo train` and `bregzoo sample` through typer's CliRunner."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from bregzoo.config import RunConfig
from bregzoo_cli.app import get_app

runner = CliRunner()
TINY = ["--steps", "2", "--batch-size", "32", "--backbone", "mlp:width=16,depth=1", "--set", "eval.samples=200",
        "--set", "eval.teacher_steps=12", "--set", 'eval.final_metrics=["mode-recall"]', "--no-check", "-q"]


def invoke(*args: str):
    return runner.invoke(get_app(), [str(a) for a in args])


def test_help_lists_train_and_sample() -> None:
    result = invoke("--help")
    assert result.exit_code == 0 and "train" in result.stdout and "sample" in result.stdout


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke("train", "--dry-run", "--divergence", "power:alpha=0.5", "--steps", "7", "--seed", "3",
                    "--set", "weighting.clamp=4", "--out", out)
    assert result.exit_code == 0, result.output
    cfg = RunConfig.from_dict(json.loads(result.stdout))
    assert (cfg.divergence, cfg.train.steps, cfg.train.seed, cfg.weighting.clamp, cfg.out) == (
        "power:alpha=0.5", 7, 3, 4.0, str(out))
    assert not out.exists()


def test_default_dry_run_names_its_run_directory() -> None:
    result = invoke("train", "--dry-run")
    assert result.exit_code == 0
    cfg = RunConfig.from_dict(json.loads(result.stdout))
    assert cfg == RunConfig().replace(out="runs/gmm8-reverse-kl-s0")


def test_set_takes_a_str_value_as_written_and_none_as_null_only_where_null_is_allowed() -> None:
    result = invoke("train", "--dry-run", "--set", "weighting.normalize=none", "--set", "weighting.clamp=none",
                    "--set", "eval.teacher_sampler='euler'", "--set", "out=123")
    assert result.exit_code == 0, result.output
    cfg = RunConfig.from_dict(json.loads(result.stdout))
    assert (cfg.weighting.normalize, cfg.weighting.clamp, cfg.eval.teacher_sampler, cfg.out) == (
        "none", None, "euler", "123")
    unset = invoke("train", "--dry-run", "--set", "out=none")  # Optional[str]: none is None, the default name
    assert unset.exit_code == 0 and RunConfig.from_dict(json.loads(unset.stdout)).out == "runs/gmm8-reverse-kl-s0"
    bad = invoke("train", "--dry-run", "--set", "weighting.normalize=true")  # checked as the text 'true'
    assert bad.exit_code == 2 and "got 'true'" in bad.stderr


def test_dry_run_output_is_a_config_that_dry_runs_unchanged(tmp_path) -> None:
    """The issue's user: run.json written from --dry-run output must read back as the same config."""
    first = invoke("train", "--dry-run", "--divergence", "power:alpha=0.25", "--estimator", "bregman:h=hellinger",
                   "--schedule", "vp:beta_max=15", "--set", "weighting.normalize=none")
    assert first.exit_code == 0, first.output
    (tmp_path / "run.json").write_text(first.stdout)
    again = invoke("train", "--dry-run", "--config", tmp_path / "run.json")
    assert again.exit_code == 0 and again.stdout == first.stdout


def test_usage_errors_are_one_line_and_debug_keeps_typers_box() -> None:
    result = invoke("train", "--steps", "abc")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--steps': ") and line.endswith(" train --help'"), line
    boxed = invoke("--debug", "train", "--steps", "abc")
    assert boxed.exit_code == 2 and "--steps" in boxed.stderr and len(boxed.stderr.splitlines()) > 1
    bare = invoke()  # no arguments: the help, as before
    assert bare.exit_code == 2 and "Usage" in bare.output and "train" in bare.output and "error:" not in bare.output


def test_config_file_then_options(tmp_path) -> None:
    (tmp_path / "run.toml").write_text(RunConfig().replace(divergence="lsif", **{"train.steps": 11}).to_toml())
    result = invoke("train", "--dry-run", "--config", tmp_path / "run.toml", "--steps", "12")
    cfg = RunConfig.from_dict(json.loads(result.stdout))
    assert (cfg.divergence, cfg.train.steps) == ("lsif", 12)


def test_user_errors_are_one_line_and_exit_2(tmp_path) -> None:
    for args, needle in [
        (["--set", "train.stepz=3"], "unknown config key 'train.stepz'"),
        (["--set", "nonsense"], "expected KEY=VALUE"),
        (["--steps", "0"], "train.steps must be > 0"),
        (["--config", tmp_path / "missing.toml"], "does not exist"),
        (["--resume", tmp_path], "not a bregzoo run directory"),
        (["--divergence", "no-such-divergence", "--no-check", "--out", tmp_path / "x"], "unknown divergence"),
    ]:
        result = invoke("train", *args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output and "Traceback" not in result.output


def test_train_resume_and_sample(tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke("train", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    # -q: no progress bar and no metrics table, one summary line naming the run directory
    (line,) = result.output.strip().splitlines()
    assert line.startswith("trained 2 steps in ") and str(out) in line and "metric" not in result.output
    assert (out / "samples.png").is_file() and (out / "generator.safetensors").is_file()
    bad = invoke("train", "--resume", out, "--divergence", "lsif")
    assert bad.exit_code == 2 and "cannot change divergence when resuming" in bad.output
    again = invoke("train", "--resume", out, "--steps", "4", "--no-check", "-q")
    assert again.exit_code == 0, again.output
    assert RunConfig.load(out).train.steps == 4
    before = (out / "config.json").read_bytes()
    fewer = invoke("train", "--resume", out, "--steps", "3", "--no-check", "-q")  # the run is at step 4
    assert fewer.exit_code == 2 and "already at step 4, past --steps 3" in fewer.output
    assert (out / "config.json").read_bytes() == before  # config.json still says 4 steps
    again = invoke("train", *TINY, "--out", out)  # the same command again: refused, nothing lost
    assert again.exit_code == 2 and "already holds a bregzoo run (finished" in again.output
    assert (out / "config.json").read_bytes() == before
    result = invoke("sample", out, "-n", "123", "--out", tmp_path / "x.pt", "--seed", "5")
    assert result.exit_code == 0, result.output
    x = torch.load(tmp_path / "x.pt", weights_only=True)
    assert x.shape == (123, 2) and torch.isfinite(x).all()
    assert invoke("sample", out / "generator.safetensors", "-n", "50", "--out", tmp_path / "x.png").exit_code == 0
    assert (tmp_path / "x.png").stat().st_size > 0
    assert invoke("sample", tmp_path / "nothing", "--out", tmp_path / "y.pt").exit_code == 2
    assert invoke("sample", out, "--out", tmp_path / "y.txt").exit_code == 2


def test_existing_foreign_directory_is_refused(tmp_path) -> None:
    (tmp_path / "mine.txt").write_text("keep")
    result = invoke("train", *TINY, "--out", tmp_path)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert invoke("train", *TINY, "--out", tmp_path, "--overwrite").exit_code == 0
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_eval_of_a_2d_run_uses_the_runs_own_metrics_and_names_a_misfit(tmp_path) -> None:
    out = tmp_path / "run"
    assert invoke("train", *TINY, "--out", out).exit_code == 0
    res = invoke("eval", out, "-n", 200, "--json")
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["metrics"]) == {"mode_recall", "modes_covered"}  # the run's final_metrics
    res = invoke("eval", out, "-n", 200, "--metrics", "fid")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "metric 'fid' does not fit this data (samples of shape (2,))" in res.output
    assert "leave --metrics out" in res.output


def test_the_end_of_run_table_says_which_way_is_better_and_gives_a_verdict(tmp_path) -> None:
    from bregzoo_cli.train_cmd import verdict

    flags = [a for a in TINY if a != "-q"]
    args = ["train", *flags, "--set", 'eval.final_metrics=["mmd","nll"]', "--out", str(tmp_path / "r")]
    res = runner.invoke(get_app(), args, env={"COLUMNS": "160"})  # rich wraps headers at CliRunner's 80
    assert res.exit_code == 0, res.output
    assert "better" in res.output and "lower" in res.output and "exact samples" in res.output
    assert "student vs teacher" in res.output
    assert (verdict("lower", 1.0, 2.0, None), verdict("lower", 3.0, 2.0, None)) == ("as good or better", "worse")
    assert (verdict("higher", 0.9, 0.99, 0.989), verdict("exact", 0.5, 0.1, 0.3)) == ("worse", "further from exact")
    assert verdict("", 1.0, 2.0, 1.5) == "" and verdict("lower", 1.0, None, None) == ""
