"""``--teacher`` and ``bregzoo eval`` accept a registry spec or a directory; this tells them apart.

A value that names an existing directory is a directory: a teacher directory from ``bregzoo teach``
becomes ``bregzoo:path='DIR'`` and brings its dataset, schedule and backbone along; a converted teacher
directory (e.g. from ``bregzoo convert edm-pkl``) becomes ``NAME:path='DIR'`` for the teacher plugin its
config.json names, with the dataset, backbone, suggested schedule and sampler it records; a diffusers
UNet2DModel folder (config.json, or unet/config.json) becomes ``ddpm:path='DIR'``. A value with a path
separator that is not a directory is an error (registry names never contain '/'). Anything else is a
registry spec such as ``analytic-gmm``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DDPM_DEFAULT_TASK = "cifar10"  # a diffusers DDPM folder here is the google/ddpm-cifar10-32 layout


@dataclass(frozen=True)
class TeacherArg:
    """A resolved teacher: the registry spec, plus what a teacher directory says about itself."""

    spec: str
    kind: str  # "bregzoo", "converted", "ddpm" or "name"
    path: Optional[str] = None
    dataset: Optional[str] = None
    schedule: Optional[str] = None
    backbone: Optional[str] = None
    sampler_method: Optional[str] = None
    sampler_steps: Optional[int] = None
    images: bool = False  # the teacher makes (C, H, W) images
    suggested_schedule: Optional[str] = None  # a converted teacher's: adopted unless --schedule is given


def looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith((".", "~"))


def resolve_teacher(value: str) -> TeacherArg:
    """A ``--teacher`` value -> TeacherArg (see the module docstring)."""
    from bregzoo import BregzooError
    from bregzoo.teacher_dir import converted_config, is_teacher_dir, read_teacher_config

    path = Path(os.path.expanduser(value))
    if path.is_dir():
        if is_teacher_dir(path):
            cfg = read_teacher_config(path)
            sampler = cfg.get("sampler", {})
            return TeacherArg(f"bregzoo:path={str(path)!r}", "bregzoo", str(path), cfg["dataset"], cfg["schedule"],
                              cfg["backbone"], sampler.get("method"), sampler.get("steps"), len(cfg["data_shape"]) == 3)
        conv = converted_config(path)
        if conv is not None:
            sampler, shape = conv.get("sampler") or {}, conv.get("data_shape") or []
            return TeacherArg(f"{conv['teacher']}:path={str(path)!r}", "converted", str(path), conv.get("dataset"),
                              None, conv.get("backbone"), sampler.get("method"), sampler.get("steps"),
                              len(shape) == 3, conv.get("schedule"))
        if (path / "config.json").is_file() or (path / "unet" / "config.json").is_file():
            return TeacherArg(f"ddpm:path={str(path)!r}", "ddpm", str(path), DDPM_DEFAULT_TASK, images=True)
        raise BregzooError(f"teacher directory '{path}' is neither a 'bregzoo teach' directory nor a diffusers "
                           "UNet2DModel folder (no config.json there or under unet/)")
    if looks_like_path(value):
        raise BregzooError(f"teacher directory '{path}' does not exist; for a diffusers DDPM teacher put its "
                           f"folder there (the files of e.g. google/ddpm-cifar10-32: config.json and the weights, "
                           f"downloaded beforehand; nothing is downloaded at run time), train one with "
                           f"'bregzoo teach --out {value}', or give a registry name (bregzoo plugins lists them)")
    return TeacherArg(value, "name")


def same_schedule(a: str, b: str) -> bool:
    """Whether two schedule specs build equal schedules ('vp' == 'vp:beta_max=20.0')."""
    from bregzoo.registry import parse_spec
    from bregzoo.schedules import make_schedule

    (na, pa), (nb, pb) = parse_spec(a), parse_spec(b)
    return make_schedule(na, **pa) == make_schedule(nb, **pb)


IMAGE_METRICS, IMAGE_FINAL_METRICS = ["fid"], ["fid", "kid", "prc"]


def _with_param(spec: str, key: str, value: str) -> str:
    """``spec`` with ``key=value`` added; giving it twice is the user's error."""
    from bregzoo import BregzooError
    from bregzoo.registry import parse_spec

    name, params = parse_spec(spec)
    if key in params:
        raise BregzooError(f"{spec!r} already sets {key}=; drop it or the option that sets it again")
    return f"{spec}{',' if params else ':'}{key}={value!r}"


def adopt_teacher(overrides: dict, data: Optional[Path] = None) -> dict:
    """``bregzoo train`` overrides with ``--teacher DIR`` resolved, and what the directory says adopted.

    A teacher directory brings its schedule (a different ``--schedule`` is an error: its denoiser is only
    right under its own), its dataset as the task, its backbone (so the estimator is the same family),
    its sampler settings for the teacher baseline, and image metrics. A diffusers DDPM folder makes the
    task ``cifar10`` and a bare ``ddpm-cifar`` backbone (the ratio estimator's trunk) read the folder's
    weights. A converted directory (``bregzoo convert``) suggests a schedule, brings its dataset as the task,
    makes a bare backbone of the family it names read the directory's weights (the ratio estimator's trunk)
    and sets its sampler for the teacher baseline; like a diffusers folder, it runs no metric by default.
    ``--data DIR`` sets the task's ``root=``. Explicit options and ``--set`` keys always win, except a
    conflicting schedule.
    """
    from bregzoo import BregzooError

    out = dict(overrides)
    arg = resolve_teacher(out["teacher"]) if "teacher" in out else None
    if arg is not None and arg.kind != "name":
        out["teacher"] = arg.spec
        if arg.schedule:
            if "schedule" in out and not same_schedule(out["schedule"], arg.schedule):
                raise BregzooError(f"the teacher in '{arg.path}' was trained with --schedule {arg.schedule}, not "
                                   f"{out['schedule']}; drop --schedule to adopt the teacher's")
            out["schedule"] = arg.schedule
        if arg.suggested_schedule:
            out.setdefault("schedule", arg.suggested_schedule)
        if arg.dataset:
            out.setdefault("task", arg.dataset)
        if arg.kind == "bregzoo":
            out.setdefault("backbone", arg.backbone)
            if arg.images:  # the 2-D defaults (mode recall, MMD) mean nothing for images
                out.setdefault("eval.metrics", IMAGE_METRICS)
                out.setdefault("eval.final_metrics", IMAGE_FINAL_METRICS)
            if arg.sampler_steps:
                out.setdefault("eval.teacher_steps", int(arg.sampler_steps))
            if arg.sampler_method:
                out.setdefault("eval.teacher_sampler", arg.sampler_method)
        else:  # a converted or diffusers folder: FID needs InceptionV3 weights, so metrics are for 'bregzoo eval'
            family = arg.backbone if arg.kind == "converted" else "ddpm-cifar"
            backbone = out.get("backbone", family)
            if family and backbone == family:
                backbone = _with_param(backbone, "path", arg.path)
            if backbone is not None:
                out["backbone"] = backbone
            out.setdefault("eval.metrics", [])
            out.setdefault("eval.final_metrics", [])
            if arg.sampler_steps:
                out.setdefault("eval.teacher_steps", int(arg.sampler_steps))
            if arg.sampler_method:
                out.setdefault("eval.teacher_sampler", arg.sampler_method)
    if data is not None:
        if "task" not in out:
            raise BregzooError("--data sets the task's data folder; give --task too (e.g. --task cifar10)")
        out["task"] = _with_param(out["task"], "root", str(Path(os.path.expanduser(data))))
    return out

