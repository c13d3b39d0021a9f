"""Fault injection: SIGKILL ``bregzoo train`` at random points, resume with ``--resume``, compare bitwise.

Each attempt runs the real console script as a subprocess (CPU, fixed seed, a checkpoint every 2 steps).
After a newer checkpoint than the one it started from appears, it is killed at a random moment (which
often lands inside a checkpoint write: they take a large share of the time). After every kill:

- the newest complete checkpoint loads (safetensors headers and tensors, optimizer files weights-only);
- no completed checkpoint was lost: every checkpoint seen complete before the kill is still there with the
  same bytes, or a newer complete one replaced it (pruning); the bytes of lost checkpoints are counted;

and at the end the run has finished and its generator weights are bitwise equal to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bregzoo import io

BREGZOO = [str(Path(sys.executable).with_name("bregzoo"))]  # the installed console script
SMALL = ["--backbone", "mlp:width=16,depth=1", "--batch-size", "32", "--seed", "7", "--no-check", "-q",
         "--set", "train.checkpoint_every=2", "--set", "train.keep_checkpoints=2", "--set", "train.log_every=5",
         "--set", "train.eval_every=1000", "--set", "train.fake_updates=1", "--set", "eval.samples=64",
         "--set", "eval.teacher_steps=2", "--set", 'eval.metrics=["mmd"]', "--set", 'eval.final_metrics=["mmd"]']


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _checkpoints(run: Path) -> list[Path]:
    d = run / "checkpoints"
    return sorted(d.glob("step-*")) if d.is_dir() else []


def _digest(ckpt: Path) -> dict[str, tuple[str, int]] | None:
    """name -> (sha256, size) of a checkpoint's files; None when it vanished while being read (pruned)."""
    try:
        return {f.name: (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_size) for f in sorted(ckpt.iterdir())}
    except FileNotFoundError:
        return None


def _assert_loadable(ckpt: Path) -> None:
    """Everything a resume reads from ``ckpt`` parses (tensors without pickle, torch files weights-only)."""
    names = {f.name for f in ckpt.iterdir()}
    assert {"model.safetensors", "train_state.safetensors"} <= names, names
    step = int(io.read_metadata(ckpt / "train_state.safetensors")["step"])
    assert f"step-{step:07d}" == ckpt.name
    for f in ckpt.iterdir():
        if f.suffix == ".safetensors":
            io.load_file(f)
        elif f.suffix == ".bin":
            torch.load(f, map_location="cpu", weights_only=True)


def _train(run: Path, steps: int, resume: bool) -> subprocess.Popen:
    where = ["--resume", str(run)] if resume else ["--out", str(run), *SMALL]
    return subprocess.Popen([*BREGZOO, "train", "--steps", str(steps), *where], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return io.load_file(path)


def _assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and torch.equal(wa[k], wb[k]), f"{k} differs between {a} and {b}"


def run_with_kills(tmp: Path, steps: int, kills: int, seed: int) -> dict[str, int]:
    """Train with ``kills`` SIGKILLs and resumes; returns the counts the report quotes."""
    rnd = random.Random(seed)
    run, ref = tmp / "killed", tmp / "reference"
    # An uninterrupted run with the same config, for the bitwise comparison (in parallel: 2 cores).
    reference = subprocess.Popen([*BREGZOO, "train", "--steps", str(steps), "--out", str(ref), *SMALL], env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stats = {"kills": 0, "bytes_lost": 0, "attempts": 0, "kills_during_checkpoint": 0}
    resume = False
    while True:
        stats["attempts"] += 1
        assert stats["attempts"] <= kills + 3, stats
        start = max((int(c.name[5:]) for c in _checkpoints(run)), default=-1)
        proc = _train(run, steps, resume)
        # Wait for progress past the checkpoint this attempt started from, then kill at a random moment.
        while proc.poll() is None and max((int(c.name[5:]) for c in _checkpoints(run)), default=-1) <= start:
            time.sleep(0.02)
        if proc.poll() is None and stats["kills"] < kills:
            time.sleep(rnd.uniform(0.0, 0.8))
            before = {c.name: d for c in _checkpoints(run) if (d := _digest(c)) is not None}
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no handler, no cleanup, no flush
                proc.wait()
                stats["kills"] += 1
                stats["kills_during_checkpoint"] += any(p.name.endswith(".tmp") for p in (run / "checkpoints").iterdir())
                after = _checkpoints(run)
                assert after, "a kill left no checkpoint at all"
                _assert_loadable(after[-1])
                for name, files in before.items():
                    now = _digest(run / "checkpoints" / name) if (run / "checkpoints" / name).exists() else None
                    if now != files and not any(c.name > name for c in after):
                        stats["bytes_lost"] += sum(size for _, size in files.values())
                resume = True
                continue
        err = proc.stderr.read().decode()
        assert proc.wait() == 0, err
        break
    assert stats["bytes_lost"] == 0, stats
    assert stats["kills"] == kills, f"the run finished before all {kills} kills: {stats}"

    err = reference.stderr.read().decode()
    assert reference.wait() == 0, err
    _assert_bitwise_equal(run / "generator.safetensors", ref / "generator.safetensors")  # EMA student
    last = f"checkpoints/step-{steps:07d}"
    for name in ("model.safetensors", "model_1.safetensors", "model_2.safetensors", "train_state.safetensors"):
        _assert_bitwise_equal(run / last / name, ref / last / name)  # raw generator, fake, estimator, rng/EMA
    return stats


def test_sigkill_once_then_resume_matches_an_uninterrupted_run_bitwise(tmp_path):
    stats = run_with_kills(tmp_path, steps=12, kills=1, seed=0)
    print(stats)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run_bitwise(tmp_path):
    stats = run_with_kills(tmp_path, steps=60, kills=6, seed=1)
    print(stats)
