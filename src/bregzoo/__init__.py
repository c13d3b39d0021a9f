"""bregzoo: one-step diffusion distillation by Bregman density-ratio matching (Di-Bregman).

The public names below are imported on first use (PEP 562), so ``import bregzoo.errors`` or the CLI's
``--help`` does not pay for importing torch (about 2.5 s of a 4 s start on 2 cores).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "bregzoo.api": (
        "check_component", "create_backbone", "create_component", "create_dataset", "create_divergence",
        "create_metric", "create_ratio_estimator", "create_teacher", "list_backbones", "list_components",
        "list_datasets", "list_divergences", "list_metrics", "list_ratio_estimators", "list_teachers",
    ),
    "bregzoo.divergence": ("Divergence",),
    "bregzoo.errors": ("BregzooError", "PluginError", "UnknownNameError"),
    "bregzoo.estimator": ("BregmanRatioEstimator", "RatioEstimator"),
    "bregzoo.hookspecs": ("hookimpl",),
    "bregzoo.registry": ("Spec",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'bregzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # static checkers and IDEs see the eager imports
    from bregzoo.api import (
        check_component, create_backbone, create_component, create_dataset, create_divergence, create_metric,
        create_ratio_estimator, create_teacher, list_backbones, list_components, list_datasets,
        list_divergences, list_metrics, list_ratio_estimators, list_teachers,
    )
    from bregzoo.divergence import Divergence
    from bregzoo.errors import BregzooError, PluginError, UnknownNameError
    from bregzoo.estimator import BregmanRatioEstimator, RatioEstimator
    from bregzoo.hookspecs import hookimpl
    from bregzoo.registry import Spec
