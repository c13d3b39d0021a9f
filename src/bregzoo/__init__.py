"""bregzoo: one-step diffusion distillation by Bregman density-ratio matching (Di-Bregman)."""

from bregzoo.api import (
    check_component,
    create_backbone,
    create_component,
    create_dataset,
    create_divergence,
    create_metric,
    create_ratio_estimator,
    create_teacher,
    list_backbones,
    list_components,
    list_datasets,
    list_divergences,
    list_metrics,
    list_ratio_estimators,
    list_teachers,
)
from bregzoo.divergence import Divergence
from bregzoo.errors import BregzooError, PluginError, UnknownNameError
from bregzoo.estimator import BregmanRatioEstimator, RatioEstimator
from bregzoo.hookspecs import hookimpl
from bregzoo.registry import Spec

__version__ = "0.1.0"

__all__ = [
    "BregmanRatioEstimator",
    "BregzooError",
    "Divergence",
    "PluginError",
    "RatioEstimator",
    "Spec",
    "UnknownNameError",
    "check_component",
    "create_backbone",
    "create_component",
    "create_dataset",
    "create_divergence",
    "create_metric",
    "create_ratio_estimator",
    "create_teacher",
    "hookimpl",
    "list_backbones",
    "list_components",
    "list_datasets",
    "list_divergences",
    "list_metrics",
    "list_ratio_estimators",
    "list_teachers",
]
