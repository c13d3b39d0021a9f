"""Every hook a bregzoo plugin can implement. Each returns data; the core calls each plugin separately."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("bregzoo")
hookimpl = pluggy.HookimplMarker("bregzoo")


@hookspec
def register_divergences() -> list[Any]:
    """Return Divergence subclasses (frozen dataclasses with a ``name``) to add to the zoo."""


@hookspec
def register_ratio_estimators() -> list[Any]:
    """Return ``Spec`` objects whose factories build density-ratio estimator losses."""


@hookspec
def register_backbones() -> list[Any]:
    """Return ``Spec`` objects whose factories build networks ``f(x, t)``."""


@hookspec
def register_teachers() -> list[Any]:
    """Return ``Spec`` objects whose factories build teachers (denoisers with a noise schedule)."""


@hookspec
def register_datasets() -> list[Any]:
    """Return ``Spec`` objects whose factories build datasets or tasks."""


@hookspec
def register_metrics() -> list[Any]:
    """Return ``Spec`` objects whose factories build sample-quality metrics."""


@hookspec
def register_commands(app: Any) -> None:
    """Add typer commands to the ``bregzoo`` command-line app ``app``."""
