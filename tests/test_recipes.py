"""benchmarks/recipes/*.toml: each loads, passes `bregzoo train --dry-run`, and is the variant its study measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bregzoo.config import RunConfig
from bregzoo_cli.app import get_app

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "benchmarks" / "recipes").glob("*.toml"))
MEASURED = re.compile(r"^# measured: (study/\S+\.json) variant=(\S+)", re.M)


def test_there_are_recipes() -> None:
    assert {p.stem for p in RECIPES} >= {"gmm8", "gmm-unbalanced"}


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_dry_runs_and_matches_the_measured_variant(recipe: Path) -> None:
    result = CliRunner().invoke(get_app(), ["train", "--config", str(recipe), "--dry-run"])
    assert result.exit_code == 0, result.output
    resolved = RunConfig.from_dict(json.loads(result.stdout)).to_dict()
    assert resolved["task"] == recipe.stem
    found = MEASURED.search(recipe.read_text())
    assert found, f"{recipe.name} must name the study that measured it ('# measured: study/X.json variant=V')"
    rows = [r for r in json.loads((ROOT / "benchmarks" / "results" / found[1]).read_text())
            if r["variant"] == found[2] and r["task"] == recipe.stem]
    assert len(rows) >= 3, f"{found[1]} has {len(rows)} seeds of {found[2]} on {recipe.stem}"
    for key, value in rows[0]["overrides"].items():
        got = _get(resolved, key)
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, (key, got, value)
