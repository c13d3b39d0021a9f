"""Property: whatever a user types, ``bregzoo train --dry-run`` ends in exit 0 or in exit 2 with one line.

Hypothesis draws the command line: component specs (registry names of every kind, misspelt and random
names, real and random parameter names, values at the edges: 0, negatives, nan, inf, 1e308, 2**64, very
long strings, broken literals), ``--set`` keys and values, numbers for ``--steps``/``--batch-size``/``--seed``,
and ``--config`` files holding random bytes, a compiled program's header, or random JSON/TOML over the
real keys. Each case runs in an empty folder of its own and must

- exit 0 and print a config that reads back to itself, or exit 2 with exactly one ``error:`` line on
  stderr; never a traceback, never typer's box, never another exit code;
- leave the folder as it was: the config file unchanged, nothing created (a dry run writes nothing).

The default run uses the ``bregzoo-cli-fuzz`` profile (a bounded number of examples); set
``BREGZOO_FUZZ_PROFILE=bregzoo-cli-fuzz-slow`` for more, or run the ``slow`` twin (``pytest -m slow``).
"""

from __future__ import annotations

import hashlib
import json
import operator
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bregzoo.api import list_components
from bregzoo.config import RunConfig
from bregzoo.plugins import get_host
from bregzoo_cli.app import get_app

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("bregzoo-cli-fuzz", max_examples=100, **_COMMON)
settings.register_profile("bregzoo-cli-fuzz-slow", max_examples=2000, **_COMMON)
PROFILE = os.environ.get("BREGZOO_FUZZ_PROFILE", "bregzoo-cli-fuzz")

# -- what the strategies draw from ----------------------------------------------------------------

KINDS = {"--task": "dataset", "--teacher": "teacher", "--backbone": "backbone", "--divergence": "divergence",
         "--estimator": "ratio-estimator"}
NAMES = sorted({n for kind in [*KINDS.values(), "metric"] for n in list_components(kind)} | {"vp", "edm"})


def _param_names() -> list[str]:
    """Every parameter name some installed factory or schedule takes (data_shape, dataset, ... among them)."""
    import inspect

    names = {"t_min", "t_max", "beta_min", "beta_max"}
    for kind in [*KINDS.values(), "metric"]:
        for spec in get_host().registries[kind]:
            try:
                names |= set(inspect.signature(spec.factory).parameters)
            except (TypeError, ValueError):
                pass
    return sorted(names - {"self", "args", "kwargs"})


PARAMS = _param_names()


def _dotted(d: dict, prefix: str = "") -> list[str]:
    return [k for key, v in d.items()
            for k in (_dotted(v, f"{prefix}{key}.") if isinstance(v, dict) else [prefix + key])]


KEYS = _dotted(RunConfig().to_dict())  # train.steps, weighting.normalize, divergence, ...

# A real command line cannot carry a NUL byte, so none is drawn.
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
LONG = st.builds(operator.mul, st.sampled_from(["9", "x", "[", "(", "-", "é"]), st.integers(1000, 6000))
EDGE = ["0", "-0", "-1", "1", "nan", "-nan", "inf", "-inf", "1e308", "-1e308", "1e-400", "1e999", str(2**64),
        str(-(2**63) - 1), "none", "null", "true", "False", "''", '""', "[]", "()", "{}", "[1, 2]", "(1,",
        "{[1]: 2}", "-" * 300 + "1", "1j", "b'x'", "...", "__import__('os')", "'a,b'", "power:alpha=0.5", "0.5",
        "2", "-0.3", "3.0", "mmd", "euler", "batch", "ema-bins"]
VALUE = st.one_of(st.sampled_from(EDGE), TEXT, LONG, st.integers().map(str), st.floats().map(repr))


def mostly(valid: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly valid: a case must get past its first check to reach the later ones."""
    return st.integers(0, 5).flatmap(lambda i: wild if i == 5 else valid)


@st.composite
def wild_spec(draw) -> str:
    """A known, misspelt or random name, with known or random parameters and edge values."""
    name = draw(st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES).map(lambda n: n[:-1] or n + "x"), TEXT, LONG))
    if draw(st.integers(0, 3)) == 0:
        return name
    keys = draw(st.lists(st.one_of(st.sampled_from(PARAMS), TEXT), max_size=3))
    return name + ":" + ",".join(f"{k}={draw(VALUE)}" for k in keys)


DIVERGENCES = list_components("divergence")
VALID_SPEC = {
    "--task": st.sampled_from(["gmm8", "gmm25", "gmm-unbalanced"]),
    "--teacher": st.just("analytic-gmm"),
    "--backbone": st.sampled_from(["mlp", "mlp:width=32,depth=2", "mlp:width=64,fourier=16", "unet"]),
    "--divergence": st.one_of(st.sampled_from(DIVERGENCES), st.floats(-0.99, 5).map(lambda a: f"power:alpha={a!r}")),
    "--estimator": st.one_of(st.sampled_from(["classifier", "lsif", "kliep"]),
                             st.sampled_from(DIVERGENCES).map(lambda d: f"bregman:h={d}")),
    "--schedule": st.one_of(st.sampled_from(["vp", "edm", "vp:beta_max=15"]),
                            st.tuples(st.floats(1e-4, 1), st.floats(1.5, 100)).map(
                                lambda p: f"edm:t_min={p[0]!r},t_max={p[1]!r}")),
}
VALID_SET = ["train.steps=10", "weighting.normalize=none", "weighting.normalize=batch", "weighting.clamp=none",
             "weighting.clamp=5", "optim.lr_generator=1e-4", "eval.metrics=['mmd']", "train.ema=0",
             "optim.betas=[0.5, 0.9]", "out=none", "train.mixed_precision=bf16", "divergence=lsif",
             "eval.final_metrics=[]", "optim.generator_decay=cosine", "eval.teacher_sampler=euler"]
VALID_CHANGES = [("train.steps", 10), ("weighting.normalize", "ema-bins"), ("divergence", "power:alpha=0.25"),
                 ("weighting.clamp", 4.0), ("eval.metrics", ["mmd"]), ("schedule", "vp"), ("train.seed", 2**63 - 1),
                 ("optim.lr_fake", 1e-308), ("out", "elsewhere"), ("estimator", "bregman:h=hellinger")]


def set_item() -> st.SearchStrategy:
    key = st.one_of(st.sampled_from(KEYS), TEXT, st.sampled_from(KEYS).map(lambda k: k + "x"))
    wild = st.tuples(key, st.one_of(VALUE, wild_spec())).map(lambda kv: f"{kv[0]}={kv[1]}")
    return mostly(st.sampled_from(VALID_SET), wild)


def json_value() -> st.SearchStrategy:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT, st.sampled_from(EDGE))
    return st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.one_of(st.sampled_from(PARAMS), TEXT), inner,
                                                                     max_size=3)), max_leaves=8)


@st.composite
def config_file(draw) -> tuple[str, bytes]:
    """(file name, bytes): a valid config (as is, or with some bytes replaced), random bytes, a binary's
    header, or random JSON or TOML over the real keys."""
    how = draw(st.sampled_from(["valid", "valid", "valid", "perturbed", "bytes", "elf", "json", "toml"]))
    if how in ("valid", "perturbed"):
        cfg = RunConfig().replace(**dict(draw(st.lists(st.sampled_from(VALID_CHANGES), max_size=3))))
        name = draw(st.sampled_from(["c.toml", "c.json"]))
        text = (cfg.to_toml() if name == "c.toml" else cfg.to_json()).encode()
        if how == "perturbed":
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + draw(st.binary(max_size=8)) + text[i + draw(st.integers(0, 8)):]
        return name, text
    name = "c" + draw(st.sampled_from([".toml", ".json", "", ".txt"]))
    if how == "bytes":
        return name, draw(st.binary(max_size=200))
    if how == "elf":
        return name, b"\x7fELF\x02\x01\x01\x00" + draw(st.binary(min_size=1, max_size=200))
    tree: dict = {}
    for key, value in draw(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), TEXT), json_value()), max_size=5)):
        *head, last = key.split(".")
        node = tree
        for part in head:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[last] = value
    if how == "json":
        return name, json.dumps(tree).encode()
    lines = [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in tree.items() if not isinstance(v, dict)]
    for section, table in tree.items():
        if isinstance(table, dict):
            lines += [f"[{json.dumps(section)}]", *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in table.items())]
    return name, "\n".join(lines).encode()


NUMBER = mostly(st.integers(0, 10**6).map(str), st.one_of(st.sampled_from(EDGE), st.integers().map(str), TEXT, LONG))


@st.composite
def train_argv(draw) -> tuple[list[str], tuple[str, bytes] | None]:
    """``train --dry-run`` with a random selection of options, and the config file it names (or None)."""
    argv = ["train", "--dry-run"]
    for option in draw(st.lists(st.sampled_from(sorted(VALID_SPEC)), max_size=4, unique=True)):
        argv += [option, draw(mostly(VALID_SPEC[option], wild_spec()))]
    for option in draw(st.lists(st.sampled_from(["--steps", "--batch-size", "--seed"]), max_size=2, unique=True)):
        argv += [option, draw(NUMBER)]
    if draw(st.integers(0, 3)) == 3:
        argv += ["--mixed-precision", draw(mostly(st.sampled_from(["no", "bf16", "fp16"]), TEXT))]
    for item in draw(st.lists(set_item(), max_size=3)):
        argv += ["--set", item]
    if draw(st.integers(0, 4)) == 4:
        argv += ["--out", "out-" + draw(st.text("abcxyz-_.", max_size=300))]
    if draw(st.integers(0, 9)) == 9:  # a directory where a name is expected: the case's own folder, or none
        argv += [draw(st.sampled_from(["--teacher", "--resume", "--data"])),
                 draw(st.one_of(st.sampled_from([".", "./nope", "nope/", "~nobody-here/x", ".."]), TEXT))]
    config = draw(config_file()) if draw(st.integers(0, 2)) == 2 else None
    if config is not None:
        argv += ["--config", config[0]]
    return argv, config


# -- the property ---------------------------------------------------------------------------------

def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _exits_0_or_2_with_one_line_and_touches_nothing(argv: list[str], config: tuple[str, bytes] | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if config is not None:
            (folder / config[0]).write_bytes(config[1])
        before, cwd = _snapshot(folder), os.getcwd()
        os.chdir(folder)  # a stray relative write (runs/..., --out) would land here and be seen
        try:
            result = CliRunner().invoke(get_app(), argv)
        finally:
            os.chdir(cwd)
        after = _snapshot(folder)

    assert result.exit_code in (0, 2), (argv, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and "╭" not in result.output, (argv, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (argv, repr(result.exception))
    event(f"exit {result.exit_code}")
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, result.stderr)
        assert result.stdout == "", (argv, result.stdout)
    else:
        cfg = RunConfig.from_dict(json.loads(result.stdout))
        assert cfg.to_json() == result.stdout, argv  # the printed config reads back to itself
    assert after == before, (argv, "the dry run changed or created a file")


@settings(settings.get_profile(PROFILE))
@given(case=train_argv())
def test_any_train_dry_run_exits_0_or_2_with_one_line_and_touches_nothing(case) -> None:
    _exits_0_or_2_with_one_line_and_touches_nothing(*case)


@pytest.mark.slow
@settings(settings.get_profile("bregzoo-cli-fuzz-slow"))
@given(case=train_argv())
def test_any_train_dry_run_exits_0_or_2_thorough(case) -> None:
    _exits_0_or_2_with_one_line_and_touches_nothing(*case)


def test_the_strategies_reach_every_kind_and_key() -> None:
    """The fuzz above is only as good as what it draws from: every registry kind, its parameters, every key."""
    assert {"gmm8", "analytic-gmm", "mlp", "power", "classifier", "mmd", "edm"} <= set(NAMES)
    assert {"alpha", "h", "width", "t_max", "root"} <= set(PARAMS)
    assert {"train.steps", "weighting.normalize", "eval.metrics", "divergence", "out"} <= set(KEYS)
    assert len(KEYS) == len(set(KEYS)) >= 35
