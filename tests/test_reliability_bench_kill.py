"""Fault injection for ``bregzoo bench``: a SIGKILL after some cells finished loses none of them.

The bench is killed (its whole process group, workers included) as soon as its first cell file appears,
at a random extra delay. On the rerun every cell file that existed at the kill is reused untouched (same
bytes, same mtime: not recomputed) and the leaderboard is completed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_bench import TINY  # the bench engineer's tiny suite: 2 tasks x 2 divergences, 2 steps each

BREGZOO = str(Path(sys.executable).with_name("bregzoo"))


def _bench(suite: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([BREGZOO, "bench", "--suite", str(suite), "--out", str(out), "--workers", "1"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _cells(out: Path) -> dict[str, tuple[bytes, int]]:
    d = out / "cells"
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.glob("*.json"))} if d.is_dir() else {}


def kill_bench_then_rerun(tmp: Path, seed: int) -> dict[str, int]:
    suite, out = tmp / "tiny.toml", tmp / "bench"
    suite.write_text(TINY)
    proc = _bench(suite, out)
    while proc.poll() is None and not _cells(out):
        time.sleep(0.02)
    assert proc.poll() is None, "the bench finished before it could be killed"
    time.sleep(random.Random(seed).uniform(0.0, 1.0))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = _cells(out)
    assert kept, "a finished cell was lost at the kill"
    for name, (data, _) in kept.items():
        json.loads(data)  # every cell file under its final name is complete JSON
    assert not (out / "leaderboard.json").exists() or len(kept) == 4

    proc = _bench(suite, out)
    err = proc.stderr.read().decode()
    assert proc.wait() == 0, err
    after = _cells(out)
    assert len(after) == 4
    for name, snapshot in kept.items():
        assert after[name] == snapshot, f"{name} was rewritten or lost"
    board = json.loads((out / "leaderboard.json").read_text())
    assert set(board["tasks"]) == {"gmm8", "gmm25"}
    return {"cells_kept": len(kept), "cells_total": len(after)}


@pytest.mark.slow
def test_bench_keeps_finished_cells_after_sigkill(tmp_path):
    print(kill_bench_then_rerun(tmp_path, seed=0))
