"""``--teacher`` and ``bregzoo eval`` accept a registry spec or a directory; this tells them apart.

A value that names an existing directory is a directory: a teacher directory from ``bregzoo teach``
becomes ``bregzoo:path='DIR'`` and brings its dataset, schedule and backbone along; a diffusers
UNet2DModel folder (config.json, or unet/config.json) becomes ``ddpm:path='DIR'``. A value with a path
separator that is not a directory is an error (registry names never contain '/'). Anything else is a
registry spec such as ``analytic-gmm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DDPM_DEFAULT_TASK = "cifar10"  # a diffusers DDPM folder here is the google/ddpm-cifar10-32 layout


@dataclass(frozen=True)
class TeacherArg:
    """A resolved teacher: the registry spec, plus what a teacher directory says about itself."""

    spec: str
    kind: str  # "bregzoo", "ddpm" or "name"
    path: Optional[str] = None
    dataset: Optional[str] = None
    schedule: Optional[str] = None
    backbone: Optional[str] = None
    sampler_method: Optional[str] = None
    sampler_steps: Optional[int] = None


def looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith((".", "~"))


def resolve_teacher(value: str) -> TeacherArg:
    """A ``--teacher`` value -> TeacherArg (see the module docstring)."""
    from bregzoo import BregzooError
    from bregzoo.teacher_dir import is_teacher_dir, read_teacher_config

    path = Path(value).expanduser()
    if path.is_dir():
        if is_teacher_dir(path):
            cfg = read_teacher_config(path)
            sampler = cfg.get("sampler", {})
            return TeacherArg(f"bregzoo:path={str(path)!r}", "bregzoo", str(path), cfg["dataset"], cfg["schedule"],
                              cfg["backbone"], sampler.get("method"), sampler.get("steps"))
        if (path / "config.json").is_file() or (path / "unet" / "config.json").is_file():
            return TeacherArg(f"ddpm:path={str(path)!r}", "ddpm", str(path), DDPM_DEFAULT_TASK)
        raise BregzooError(f"teacher directory '{path}' is neither a 'bregzoo teach' directory nor a diffusers "
                           "UNet2DModel folder (no config.json there or under unet/)")
    if looks_like_path(value):
        raise BregzooError(f"teacher directory '{path}' does not exist; train one with 'bregzoo teach --out {value}' "
                           "or give a registry name (bregzoo plugins lists them)")
    return TeacherArg(value, "name")


def same_schedule(a: str, b: str) -> bool:
    """Whether two schedule specs build equal schedules ('vp' == 'vp:beta_max=20.0')."""
    from bregzoo.registry import parse_spec
    from bregzoo.schedules import make_schedule

    (na, pa), (nb, pb) = parse_spec(a), parse_spec(b)
    return make_schedule(na, **pa) == make_schedule(nb, **pb)
