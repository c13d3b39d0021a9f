"""Benchmark suites: a small TOML file of cell groups, expanded into (divergence × estimator × student steps
× task × seed) cells.

Every cell of a group trains with the same RunConfig overrides, so the budget is identical across
divergences. A group's ``divergences`` are registry patterns (``"*"`` picks up every installed
plugin, e.g. the example ``alpha``), explicit specs (``"power:alpha=0.5"``), or ``"top:N"``: the N
best divergences of an earlier group (``rank_from``), resolved once that group has results. A group's
``student_steps = [1, 2, 4]`` puts the k of a k-step student in the grid (omitted: the config's
``train.student_steps``, 1 by default); k is part of each cell's id and config.

Example (``benchmarks/suites/quick.toml``)::

    [suite]
    name = "quick"
    [config]                      # RunConfig overrides for every cell (dotted keys)
    "train.steps" = 60
    [[group]]
    name = "2d"
    tasks = ["gmm8", "gmm25"]
    divergences = ["reverse-kl", "bkl", "lsif"]
    seeds = 1
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bregzoo.api import list_divergences
from bregzoo.config import RunConfig
from bregzoo.errors import BregzooError
from bregzoo.registry import parse_spec

SUITES_DIR = Path(__file__).resolve().parents[3] / "benchmarks" / "suites"  # the source tree's suites
_SUITE_KEYS = {"suite", "config", "leaderboard", "group"}
_HEAD_KEYS = {"name", "description", "smoke"}
_BOARD_KEYS = {"primary", "primary_by_task", "higher_is_better"}
_GROUP_KEYS = {"name", "tasks", "divergences", "estimators", "seeds", "config", "rank_from", "requires",
               "missing_note", "student_steps"}
_TOP = re.compile(r"top:(\d+)")


@dataclass(frozen=True)
class Group:
    """One block of cells sharing tasks, divergences, estimators, seeds and config overrides."""

    name: str
    tasks: tuple[str, ...]
    divergences: tuple[str, ...]
    estimators: tuple[str, ...] = ("classifier",)
    seeds: int = 1
    config: dict[str, Any] = field(default_factory=dict)
    rank_from: str | None = None
    requires: tuple[str, ...] = ()  # paths that must exist (e.g. a trained teacher directory)
    missing_note: str = ""
    student_steps: tuple[int, ...] | None = None  # k-step students in the grid; None: the config's train.student_steps

    def missing(self, root: Path = Path(".")) -> list[str]:
        """The ``requires`` paths that do not exist (relative paths are taken from ``root``)."""
        return [p for p in self.requires if not (root / p).exists()]


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    groups: tuple[Group, ...]
    config: dict[str, Any] = field(default_factory=dict)
    primary: str = "mmd2"
    primary_by_task: dict[str, str] = field(default_factory=dict)
    higher_is_better: tuple[str, ...] = ()
    description: str = ""
    source: str = ""
    smoke: bool = False  # a pipeline check at a toy budget: its leaderboard says it ranks nothing

    def primary_of(self, task: str) -> str:
        """The metric that ranks divergences on ``task``."""
        return self.primary_by_task.get(task, self.primary)


@dataclass(frozen=True)
class Cell:
    """One training run of the benchmark."""

    group: str
    task: str
    divergence: str
    estimator: str
    seed: int
    config: RunConfig
    student_steps: int = 1

    @property
    def id(self) -> str:
        """A file-name-safe id, unique within a suite: ``<group>--<task>--<divergence>--<estimator>--s<seed>``,
        with ``--k<k>`` before the seed for a k-step student (k > 1: one-step cells keep their old ids)."""
        steps = [f"k{self.student_steps}"] if self.student_steps != 1 else []
        parts = [self.group, self.task, self.divergence, self.estimator, *steps, f"s{self.seed}"]
        return "--".join(re.sub(r"[^A-Za-z0-9_.=-]+", "_", p.replace(":", "-")) for p in parts)

    @property
    def config_hash(self) -> str:
        """A short hash of the cell's full config: a finished cell is reused only if it still matches."""
        text = json.dumps(self.config.replace(out=None).to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_keys(table: Any, valid: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise BregzooError(f"suite section {where!r} must be a table, got {table!r}")
    unknown = sorted(set(table) - valid)
    if unknown:
        raise BregzooError(f"unknown key {unknown[0]!r} in suite section {where!r}; valid keys: "
                           f"{', '.join(sorted(valid))}")
    return table


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BregzooError(f"suite key {where!r} must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def parse_suite(data: dict[str, Any], source: str = "") -> Suite:
    """Validate a suite's TOML data; unknown keys and wrong types are errors that say where."""
    _check_keys(data, _SUITE_KEYS, "(top level)")
    head = _check_keys(data.get("suite", {}), _HEAD_KEYS, "suite")
    board = _check_keys(data.get("leaderboard", {}), _BOARD_KEYS, "leaderboard")
    common = _check_keys(data.get("config", {}), set(data.get("config", {})), "config")
    raw_groups = data.get("group", [])
    if not isinstance(raw_groups, list) or not raw_groups:
        raise BregzooError(f"suite {source or head.get('name', '?')!r} has no [[group]] of cells")
    groups = []
    for i, g in enumerate(raw_groups):
        g = _check_keys(g, _GROUP_KEYS, f"group[{i}]")
        name = g.get("name", f"group{i}")
        seeds = g.get("seeds", 1)
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
            raise BregzooError(f"suite key 'group[{i}].seeds' must be an integer >= 1, got {seeds!r}")
        for key in ("tasks", "divergences"):
            if key not in g:
                raise BregzooError(f"suite group {name!r} needs {key!r}")
        steps = g.get("student_steps")
        if steps is not None:
            steps = [steps] if isinstance(steps, int) and not isinstance(steps, bool) else steps
            if (not isinstance(steps, list) or not steps or len(set(steps)) != len(steps)
                    or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in steps)):
                raise BregzooError(f"suite key 'group[{i}].student_steps' must be a list of distinct integers >= 1 "
                                   f"(the k of k-step students, e.g. [1, 2, 4]), got {g['student_steps']!r}")
            steps = tuple(steps)
        groups.append(Group(
            name=name, tasks=_strings(g["tasks"], f"{name}.tasks"),
            divergences=_strings(g["divergences"], f"{name}.divergences"),
            estimators=_strings(g.get("estimators", ["classifier"]), f"{name}.estimators"), seeds=seeds,
            config=dict(g.get("config", {})), rank_from=g.get("rank_from"),
            requires=tuple(g.get("requires", ())), missing_note=str(g.get("missing_note", "")), student_steps=steps))
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise BregzooError(f"suite group names must be unique, got {names}")
    for g in groups:
        tops = [d for d in g.divergences if _TOP.fullmatch(d)]
        if tops and g.rank_from not in names[: names.index(g.name)]:
            raise BregzooError(f"suite group {g.name!r} uses {tops[0]!r} but rank_from={g.rank_from!r} "
                               f"is not an earlier group; earlier groups: {names[: names.index(g.name)]}")
    suite = Suite(name=head.get("name", Path(source).stem if source else "suite"), groups=tuple(groups),
                  config=common, primary=board.get("primary", "mmd2"),
                  primary_by_task=dict(board.get("primary_by_task", {})),
                  higher_is_better=tuple(board.get("higher_is_better", ())),
                  description=head.get("description", ""), source=source, smoke=bool(head.get("smoke", False)))
    for g in groups:  # fail on a bad config key (or a k its levels cannot have) now, not after an hour of running
        base = base_config(suite, g)
        for k in g.student_steps or ():
            base.replace(**{"train.student_steps": k})
    return suite


def load_suite(name_or_path: str | Path) -> Suite:
    """A suite by name (``quick``, ``standard``: ``benchmarks/suites/<name>.toml``) or by file path."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = Path(name_or_path)
    if not path.suffix:
        candidates = [Path("benchmarks/suites") / f"{path}.toml", SUITES_DIR / f"{path}.toml"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            known = sorted({p.stem for d in (Path("benchmarks/suites"), SUITES_DIR) if d.is_dir()
                            for p in d.glob("*.toml")})
            raise BregzooError(f"no suite named {str(name_or_path)!r}; known suites: {', '.join(known) or 'none'}; "
                               "or pass a suite .toml file")
        path = found[0]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BregzooError(f"suite file {path} does not exist") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BregzooError(f"suite file {path} is not valid TOML: {exc}") from None
    return parse_suite(data, str(path))


def base_config(suite: Suite, group: Group) -> RunConfig:
    """The RunConfig every cell of ``group`` starts from: suite-wide overrides, then the group's."""
    cfg = RunConfig()
    for overrides in (suite.config, group.config):
        flat = _flatten(overrides)
        components = {k: v for k, v in flat.items() if "." not in k}
        cfg = cfg.replace(**components, **{k: v for k, v in flat.items() if "." in k})
    return cfg


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables -> dotted keys (``{"train": {"steps": 1}}`` -> ``{"train.steps": 1}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and "name" not in v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resolve_divergences(patterns: tuple[str, ...], ranked: dict[str, list[str]] | None = None,
                        rank_from: str | None = None) -> list[str]:
    """Patterns and specs -> divergence specs, in order, without duplicates.

    ``"*kl*"`` matches registered names; ``"power:alpha=0.5"`` is kept as given; ``"top:N"`` takes
    the N best of ``ranked[rank_from]`` not already chosen.
    """
    out: list[str] = []
    for p in patterns:
        top = _TOP.fullmatch(p)
        if top:
            best = [d for d in (ranked or {}).get(rank_from or "", []) if d not in out]
            out += best[: int(top.group(1))]
        elif ":" in p:
            out.append(p)
        else:
            names = list_divergences(p)
            if not names:
                raise BregzooError(f"suite divergence pattern {p!r} matches no registered divergence; "
                                   f"registered: {', '.join(list_divergences())}")
            out += [n for n in names if n not in out]
    return list(dict.fromkeys(out))


def expand(suite: Suite, group: Group, *, seeds: int | None = None, divergence: str = "*", task: str = "*",
           ranked: dict[str, list[str]] | None = None) -> list[Cell]:
    """The cells of one group, filtered by fnmatch patterns on the divergence and task names.

    ``seeds`` overrides the group's seed count. Every cell gets the same config except for the
    task, divergence, estimator, student steps and seed.
    """
    base = base_config(suite, group)
    ks = group.student_steps or (base.train.student_steps,)
    divs = resolve_divergences(group.divergences, ranked, group.rank_from)
    tasks = [t for t in group.tasks if fnmatch.fnmatchcase(parse_spec(t)[0], task)]
    divs = [d for d in divs if fnmatch.fnmatchcase(parse_spec(d)[0], divergence)]
    # Seed-major order: a suite stopped part-way has every task x divergence on the first seeds.
    return [Cell(group.name, t, d, e, s, base.replace(task=t, divergence=d, estimator=e,
                                                      **{"train.seed": s, "train.student_steps": k}), k)
            for s in range(seeds or group.seeds) for t in tasks for d in divs for e in group.estimators for k in ks]
