"""No lost or mixed runs: one training per run directory, a resume only of the config a checkpoint was
trained with, and a checkpoint that cannot be written (full disk) leaves the last one as it was."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bregzoo import io
from bregzoo.config import RunConfig
from bregzoo.train import rundir
from bregzoo.train.runlock import RunLock
from bregzoo_cli.app import get_app
from conftest import TINY_TRAIN

BREGZOO = str(Path(sys.executable).with_name("bregzoo"))


def _one_error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


# -- one training per run directory ---------------------------------------------------------------------------

def test_two_trainings_on_one_directory_one_runs_and_the_other_is_refused_then_a_dead_owner_is_taken_over(tmp_path):
    out = tmp_path / "run"
    # Far more steps than the test waits for: the winner is still training when the loser is refused.
    procs = {seed: subprocess.Popen([BREGZOO, "train", "--out", str(out), "--steps", "100000", "--seed", str(seed),
                                     *TINY_TRAIN], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)}
    try:
        deadline = time.monotonic() + 120
        while all(p.poll() is None for p in procs.values()):
            assert time.monotonic() < deadline, "neither training was refused"
            time.sleep(0.05)
        loser = next(s for s, p in procs.items() if p.poll() is not None)
        winner = 3 - loser
        assert procs[winner].poll() is None, "the other training stopped too"
        err = procs[loser].stderr.read()
        assert procs[loser].returncode == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("error: ") and f"in use by another bregzoo train (pid {procs[winner].pid})" in err
        assert "Traceback" not in err
        # The directory is the winner's: its config, its lock, its checkpoints, and nothing of the loser.
        while not _checkpoints(out):
            assert procs[winner].poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert json.loads((out / "config.json").read_text())["config"]["train"]["seed"] == winner
        assert (out / ".lock").read_text().strip() == str(procs[winner].pid)
        procs[winner].send_signal(signal.SIGKILL)  # dies holding the lock file: a stale lock
        procs[winner].wait()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    assert (out / ".lock").read_text().strip() == str(procs[winner].pid)
    step = int(_checkpoints(out)[-1].name[5:])
    res = CliRunner().invoke(get_app(), ["train", "--resume", str(out), "--steps", str(step + 2), "--no-check", "-q",
                                         "--set", "train.checkpoint_every=1000"])
    assert res.exit_code == 0, res.output
    assert f"took over the lock of pid {procs[winner].pid}, which is no longer running" in res.stdout
    assert (out / "generator.safetensors").exists() and not (out / ".lock").exists()


@pytest.mark.parametrize("argv", [["--resume", "run", "--steps", "6", "--no-check"],
                                  ["--out", "run", "--overwrite", "--steps", "2", *TINY_TRAIN]], ids=["resume", "overwrite"])
def test_a_directory_held_by_a_live_training_is_refused_in_one_line_and_left_as_it_was(tmp_path, monkeypatch,
                                                                                     finished_run, argv):
    shutil.copytree(finished_run, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    with RunLock(tmp_path / "run"):  # this test's process is the live owner
        before = _snapshot(tmp_path)
        line = _one_error_line(CliRunner().invoke(get_app(), ["train", *argv]))
        assert f"in use by another bregzoo train (pid {os.getpid()})" in line and "run" in line
        assert _snapshot(tmp_path) == before
    assert not (tmp_path / "run" / ".lock").exists()


def test_a_lock_file_of_a_dead_process_is_taken_over_and_one_of_a_live_holder_is_not(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / ".lock").write_text(f"{dead.pid}\n")
    with RunLock(tmp_path) as lock:
        assert lock.taken_over == dead.pid and (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(Exception, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / ".lock").exists()


def test_a_folder_of_other_files_is_refused_before_it_gets_a_lock_file(tmp_path, monkeypatch):
    from bregzoo import BregzooError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    monkeypatch.setattr(RunLock, "acquire", lambda self: pytest.fail("a lock file was made in someone else's folder"))
    with pytest.raises(BregzooError, match="not a bregzoo run directory"):
        rundir.claim(tmp_path / "mine")


# -- a resume continues the config its checkpoint was trained with ---------------------------------------------

def _edit_config(run: Path, **changes) -> None:
    data = json.loads((run / "config.json").read_text())
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = data["config"]
        for p in parents:
            node = node[p]
        node[last] = value
    (run / "config.json").write_text(json.dumps(data, indent=2))


def test_each_checkpoint_stores_the_hash_of_its_config_less_the_keys_a_resume_may_change(finished_run):
    meta = io.read_metadata(finished_run / "checkpoints" / "step-0000004" / "train_state.safetensors")
    cfg = RunConfig.load(finished_run)
    assert meta["config_sha256"] == rundir.identity_metadata(cfg)["config_sha256"]
    same = cfg.replace(out="elsewhere", **{"train.steps": 99, "train.eval_every": 7, "train.keep_checkpoints": 5})
    assert rundir.identity_metadata(same) == rundir.identity_metadata(cfg)
    assert rundir.identity_metadata(cfg.replace(divergence="lsif")) != rundir.identity_metadata(cfg)
    assert not {"out", "train.steps"} & set(json.loads(meta["config_identity"]))


@pytest.mark.parametrize("changes, words", [
    ({"divergence": "lsif"}, ["divergence 'reverse-kl' -> 'lsif'"]),
    ({"train__seed": 5, "optim__lr_generator": 0.5}, ["train.seed 0 -> 5", "optim.lr_generator"]),
], ids=["divergence", "seed-and-lr"])
def test_resume_after_config_json_was_edited_is_refused_in_one_line(tmp_path, monkeypatch, finished_run, changes,
                                                                    words):
    shutil.copytree(finished_run, tmp_path / "run")
    _edit_config(tmp_path / "run", **changes)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    line = _one_error_line(CliRunner().invoke(get_app(), ["train", "--resume", "run", "--steps", "6", "--no-check"]))
    for word in [*words, "step-0000004", "train.steps"]:
        assert word in line, line
    assert _snapshot(tmp_path) == before


def test_an_allowed_edit_resumes_and_every_resume_is_recorded_in_config_json(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert json.loads((run / "config.json").read_text())["resumes"] == []
    _edit_config(run, train__eval_every=3, train__keep_checkpoints=3)
    res = CliRunner().invoke(get_app(), ["train", "--resume", str(run), "--steps", "6", "--no-check", "-q"])
    assert res.exit_code == 0, res.output
    resumes = json.loads((run / "config.json").read_text())["resumes"]
    assert [(r["step"], r["steps"]) for r in resumes] == [(4, 6)]
    assert time.strptime(resumes[0]["time"], "%Y-%m-%dT%H:%M:%SZ")


# -- a full disk during a checkpoint ------------------------------------------------------------------------------

def _digest(ckpt: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(ckpt.iterdir())}


@pytest.mark.parametrize("target", ["bregzoo.io.write_bytes", "accelerate.utils.other.safe_save_file"],
                         ids=["train-state", "accelerate-model-file"])
def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, target):
    import importlib

    module, name = target.rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)
    seen: dict[str, dict[str, str]] = {}

    def full_disk(*args, **kwargs):
        path = Path(args[1] if name == "safe_save_file" else args[0])
        if path.parent.name.startswith(".step-0000004"):  # the second checkpoint: the disk is full
            seen["before"] = _digest(tmp_path / "run" / "checkpoints" / "step-0000002")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(*args, **kwargs)

    monkeypatch.setattr(target, full_disk)
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(CliRunner().invoke(get_app(), ["train", "--out", "run", "--steps", "4", *TINY_TRAIN]))
    for word in ["step 4", "step-0000004", "No space left on device", "step-0000002", "--resume run"]:
        assert word in line, line
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-0000002"]  # no .step-0000004.tmp left behind
    assert _digest(ckpts / "step-0000002") == seen["before"]
    assert not (tmp_path / "run" / "generator.safetensors").exists() and not (tmp_path / "run" / ".lock").exists()

    monkeypatch.setattr(target, real)  # space freed: the run continues from the intact checkpoint
    res = CliRunner().invoke(get_app(), ["train", "--resume", "run", "--no-check", "-q"])
    assert res.exit_code == 0, res.output
    assert "resumed from run/checkpoints/step-0000002 at step 2" in res.output
