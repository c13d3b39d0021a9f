"""The 2-process run (``accelerate launch --multi_gpu --num_processes 2`` on CPU, gloo) exits 0 every time and
tears its process group down cleanly.

tests/test_train_dist.py checks that two processes follow one process's trajectory; this file checks that
the launch itself is dependable: repeated, every launch exits 0, prints no traceback and no warning about
a process group left alive, leaves no process of its session behind, and writes a complete run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ARGS = ["train", "--steps", "6", "--backbone", "mlp:width=16,depth=1", "--batch-size", "16", "--no-check", "-q",
        "--set", "train.checkpoint_every=3", "--set", "train.log_every=2", "--set", "eval.samples=64",
        "--set", "eval.teacher_steps=2", "--set", 'eval.metrics=["mmd"]', "--set", 'eval.final_metrics=["mmd"]']
BAD_SIGNS = ("Traceback", "destroy_process_group", "process group has NOT been destroyed", "Connection reset",
             "ChildFailedError", "Timeout")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_alive(sid: int) -> list[int]:
    """PIDs still in session ``sid`` (the launcher's children), from /proc."""
    alive = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.getsid(int(p.name)) == sid:
                    alive.append(int(p.name))
            except (ProcessLookupError, PermissionError):
                pass
    return alive


def launch_two_processes(out: Path) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "bregzoo_cli", *ARGS, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        left = _session_alive(proc.pid)
        if left:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes left behind by the launch: {left}"
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_two_process_launch_exits_0_every_time_and_tears_down_cleanly(tmp_path):
    for i in range(3):
        out = tmp_path / f"run{i}"
        res = launch_two_processes(out)
        assert res.returncode == 0, f"launch {i}: rc {res.returncode}\n{res.stderr[-3000:]}"
        for sign in BAD_SIGNS:
            assert sign not in res.stderr, f"launch {i}: {sign!r} in stderr:\n{res.stderr[-3000:]}"
        config = json.loads((out / "config.json").read_text())
        assert config["num_processes"] == 2
        assert (out / "generator.safetensors").is_file()
        assert (out / "checkpoints" / "step-0000006" / "random_states_1.pkl").is_file()  # both ranks saved
