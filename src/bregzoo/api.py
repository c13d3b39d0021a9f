"""timm-style registry functions: ``list_divergences("*kl*")``, ``create_divergence("power", alpha=0.5)``."""

from __future__ import annotations

from typing import Any, Callable

from bregzoo.errors import BregzooError
from bregzoo.plugins import KINDS, get_host
from bregzoo.registry import Registry


def _registry(kind: str) -> Registry:
    if kind not in KINDS:  # a bare KeyError would not say what the kinds are
        raise BregzooError(f"unknown component kind {kind!r}; the kinds are {', '.join(KINDS)}")
    return get_host().registries[kind]


def list_components(kind: str, pattern: str = "*") -> list[str]:
    """Sorted names of ``kind`` (a key of ``bregzoo.plugins.KINDS``) matching an fnmatch pattern."""
    return _registry(kind).names(pattern)


def create_component(kind: str, name: str, **params: Any) -> Any:
    """Build the ``kind`` component ``name`` (or ``'name:key=value'``) with ``params``."""
    return _registry(kind).create(name, **params)


def check_component(kind: str, name: str, **params: Any) -> None:
    """Check what ``create_component`` would, without building: the name, the parameters' names and
    (where the factory annotates them int, float, bool or str) the values' types.

    For components that are costly to build (networks, datasets, teachers), e.g. in ``train --dry-run``.
    """
    _registry(kind).check(name, **params)


def _pair(kind: str) -> tuple[Callable[..., list[str]], Callable[..., Any]]:
    def lister(pattern: str = "*") -> list[str]:
        return list_components(kind, pattern)

    def creator(name: str, **params: Any) -> Any:
        return create_component(kind, name, **params)

    lister.__doc__ = f"Sorted {kind} names matching an fnmatch pattern, e.g. '*kl*'."
    creator.__doc__ = f"Build the {kind} called ``name`` (or 'name:key=value') with keyword parameters."
    return lister, creator


list_divergences, create_divergence = _pair("divergence")
list_ratio_estimators, create_ratio_estimator = _pair("ratio-estimator")
list_backbones, create_backbone = _pair("backbone")
list_teachers, create_teacher = _pair("teacher")
list_datasets, create_dataset = _pair("dataset")
list_metrics, create_metric = _pair("metric")
