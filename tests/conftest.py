"""Shared fixtures: a plugin host that is forgotten before and after a test, fake entry points, a tiny
training (its CLI arguments and one finished run) and a tiny bench suite."""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from bregzoo.plugins import ENTRY_POINT_GROUP, reset_host


@pytest.fixture
def fresh_host():
    """Make the next ``get_host()`` reload plugins (so monkeypatched env vars apply), and clean up after."""
    reset_host()
    yield
    reset_host()


@dataclass
class FakeEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint`` with a distribution, for the loader's tests."""

    name: str
    dist_name: str
    loader: Callable[[], Any]
    version: str = "9.9"

    @property
    def dist(self) -> SimpleNamespace:
        return SimpleNamespace(name=self.dist_name, version=self.version)

    def load(self) -> Any:
        return self.loader()


@pytest.fixture
def extra_entry_points(monkeypatch):
    """``add(ep, ...)``: make the loader see the installed entry points plus the given fakes."""
    original = md.entry_points  # the attribute patched below is this very function
    real = list(original(group=ENTRY_POINT_GROUP))
    fakes: list[FakeEntryPoint] = []

    def entry_points(**kw: Any):
        return real + fakes if kw.get("group") == ENTRY_POINT_GROUP else original(**kw)

    monkeypatch.setattr("bregzoo.plugins.md.entry_points", entry_points)
    return fakes.extend


@pytest.fixture
def one_thread():
    """One torch/BLAS thread: these tensors are small, and on a shared 2-core box extra threads only
    oversubscribe it (measured 5x slower). Modules opt in with ``pytestmark = usefixtures("one_thread")``."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


# -- a tiny training and a tiny suite: the point is the pipeline, not the numbers ---------------------

TINY_TRAIN = ["--backbone", "mlp:width=16,depth=1", "--batch-size", "16", "--no-check", "-q",
              "--set", "train.checkpoint_every=2", "--set", "train.log_every=1000", "--set", "train.eval_every=1000",
              "--set", "train.fake_updates=1", "--set", "eval.samples=32", "--set", "eval.teacher_steps=2",
              "--set", 'eval.metrics=["mmd"]', "--set", 'eval.final_metrics=["mmd"]']


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One tiny finished run (4 steps, checkpoints at 2 and 4); a test that changes it works on a copy."""
    from typer.testing import CliRunner

    from bregzoo_cli.app import get_app

    out = tmp_path_factory.mktemp("finished") / "run"
    result = CliRunner().invoke(get_app(), ["train", "--out", str(out), "--steps", "4", *TINY_TRAIN])
    assert result.exit_code == 0, result.output
    return out


# A bench suite whose cells take a few seconds each.
TINY_SUITE = """
[suite]
name = "tiny"
[leaderboard]
primary = "mmd2"
higher_is_better = ["precision", "mode_recall", "modes_covered"]
[config]
"train.steps" = 2
"train.batch_size" = 32
"train.log_every" = 1
"train.eval_every" = 1000
"train.checkpoint_every" = 1000
"eval.samples" = 64
"eval.teacher_steps" = 4
"eval.final_metrics" = ["mmd", "precision"]
[[group]]
name = "2d"
tasks = ["gmm8", "gmm25"]
divergences = ["reverse-kl", "lsif"]
seeds = 1
"""
