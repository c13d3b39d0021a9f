"""bregzoo.io under SIGKILL: the file under its final name is always a complete old or new version."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from bregzoo import io

A, B = b"A" * (4 << 20), b"B" * (4 << 20)


def _writer(target: Path, ready: int) -> None:
    """The forked child: rewrite one 4 MiB file forever through io.write_bytes, alternating A and B."""
    io.write_bytes(target, A)
    os.write(ready, b"1")
    i = 0
    while True:
        io.write_bytes(target, B if i % 2 == 0 else A)
        i += 1


def _kill_writer_at_random_points(target: Path, kills: int, seed: int) -> list[bytes]:
    """Fork a writer (fork: no interpreter start-up per kill), SIGKILL it at a random moment, check the file."""
    rnd, seen = random.Random(seed), []
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                _writer(target, w)
            finally:
                os._exit(1)
        assert os.read(r, 1) == b"1"
        os.close(r), os.close(w)
        time.sleep(rnd.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        data = target.read_bytes()
        seen.append(data[:1])
        assert data in (A, B), f"torn file: {len(data)} bytes"
    return seen


def test_sigkill_during_atomic_rewrites_never_leaves_a_torn_file(tmp_path):
    target = tmp_path / "weights.bin"
    _kill_writer_at_random_points(target, kills=3, seed=0)


@pytest.mark.slow
def test_sigkill_during_atomic_rewrites_at_many_random_points(tmp_path):
    target = tmp_path / "weights.bin"
    seen = _kill_writer_at_random_points(target, kills=20, seed=1)
    assert {b"A", b"B"} <= set(seen)  # the kills really landed between different rewrites


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = io.write_text(tmp_path / "result.json", "old\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full_disk)  # fails after the temp file is written, before the rename
    with pytest.raises(OSError, match="No space"):
        io.write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_atomic_dir_publishes_all_or_nothing(tmp_path):
    final = tmp_path / "checkpoint"
    with io.atomic_dir(final) as d:
        (d / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(final) as d:
            (d / "a").write_text("2")
            raise RuntimeError("killed halfway")
    assert (final / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


def test_json_results_refuse_nan_instead_of_writing_invalid_json(tmp_path):
    with pytest.raises(ValueError):
        io.write_json(tmp_path / "r.json", {"fid": float("nan")})
    assert not (tmp_path / "r.json").exists()


def test_corrupt_safetensors_is_a_user_error_naming_the_file(tmp_path):
    good = io.save_file({"w": __import__("torch").ones(3)}, tmp_path / "g.safetensors")
    raw = good.read_bytes()
    for name, data in {"truncated": raw[: len(raw) // 2], "garbage": b"\x00" * 7, "empty": b""}.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(data)
        with pytest.raises(io.BregzooError, match=name):
            io.load_file(bad)
