"""bregzoo bench --executor: cells run as Ray tasks on a local Ray instance, and the cell files stay the
one source of truth (a cell finished by one executor is reused by the other)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bregzoo import BregzooError
from bregzoo.bench import load_suite, run_suite
from bregzoo.bench.executors import ExecutorSpec
from bregzoo_cli.app import get_app
from conftest import TINY_SUITE

# conftest's tiny suite on one task, with a third divergence
TINY = TINY_SUITE.replace('tasks = ["gmm8", "gmm25"]', 'tasks = ["gmm8"]').replace(
    'divergences = ["reverse-kl", "lsif"]', 'divergences = ["reverse-kl", "lsif", "kl"]')


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))}


def test_ray_and_local_executors_share_the_cell_files(tmp_path):
    pytest.importorskip("ray")
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    suite, out = load_suite(path), tmp_path / "out"

    # one cell locally first; Ray then runs only the two the cell files lack
    first = run_suite(suite, out, divergence="reverse-kl", executor=ExecutorSpec("local"))
    assert (first.ran, first.reused) == (1, 0)
    seen = []
    run = run_suite(suite, out, executor=ExecutorSpec("ray", cpus_per_cell=1),
                    on_cell=lambda c, rec, done, total: seen.append((c.divergence, done, total)))
    assert (run.ran, run.reused) == (2, 1)
    assert sorted(d for d, _, _ in seen) == ["kl", "lsif"] and {t for _, _, t in seen} == {3}
    recs = _records(out)
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs.values())
    ray_recs = [r for r in recs.values() if r["divergence"] != "reverse-kl"]
    assert all("node" in r and r["exact"] for r in ray_recs)  # ran as Ray tasks; the noise floor is kept
    assert not (out / "work").exists() or not any((out / "work").iterdir())  # Ray tasks train in their own scratch

    # and a local run reuses everything Ray finished
    again = run_suite(suite, out, executor=ExecutorSpec("local"))
    assert (again.ran, again.reused) == (0, 3)


def test_executor_options_are_checked():
    with pytest.raises(BregzooError, match="unknown executor 'banana'"):
        ExecutorSpec("banana")
    with pytest.raises(BregzooError, match="gpus_per_cell"):
        ExecutorSpec("ray", gpus_per_cell=-1)


@pytest.mark.parametrize("args, message", [
    (["--executor", "banana"], "unknown executor 'banana'"),
    (["--gpus-per-cell", "1"], "--ray-address and --gpus-per-cell are for --executor ray"),
])
def test_bad_executor_options_are_one_line(tmp_path, args, message):
    res = CliRunner().invoke(get_app(), ["bench", "--suite", "quick", "--out", str(tmp_path), *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
