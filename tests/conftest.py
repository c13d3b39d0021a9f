"""Shared fixtures: a plugin host that is forgotten before and after a test, and fake entry points."""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
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
