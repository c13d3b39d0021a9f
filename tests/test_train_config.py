"""RunConfig: JSON/TOML round trips, unknown keys, validation, component specs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bregzoo import BregzooError
from bregzoo.config import RunConfig


def test_defaults_round_trip_json_and_toml() -> None:
    cfg = RunConfig()
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert RunConfig.from_toml(cfg.to_toml()) == cfg


@settings(max_examples=30, deadline=None)
@given(
    steps=st.integers(1, 10**6),
    lr=st.floats(1e-8, 1.0, allow_nan=False),
    clamp=st.one_of(st.none(), st.floats(1e-3, 50.0, allow_nan=False)),
    alpha=st.sampled_from(["0.5", "-0.3", "2"]),
    normalize=st.sampled_from(["none", "batch", "ema-bins"]),
    metrics=st.lists(st.sampled_from(["mmd", "w2", "mode-recall"]), max_size=3),
    out=st.one_of(st.none(), st.text("abc/_-é ", min_size=1, max_size=12)),
)
def test_any_config_round_trips(steps, lr, clamp, alpha, normalize, metrics, out) -> None:
    cfg = RunConfig().replace(**{
        "train.steps": steps, "optim.lr_generator": lr, "weighting.clamp": clamp, "divergence": f"power:alpha={alpha}",
        "weighting.normalize": normalize, "eval.metrics": metrics, "out": out})
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert RunConfig.from_toml(cfg.to_toml()) == cfg
    assert RunConfig.from_toml(cfg.to_toml()).to_json() == cfg.to_json()


def test_files_and_run_config_json(tmp_path) -> None:
    cfg = RunConfig().replace(divergence="lsif", **{"train.seed": 3})
    (tmp_path / "run.toml").write_text(cfg.to_toml())
    (tmp_path / "run.json").write_text(cfg.to_json())
    assert RunConfig.load(tmp_path / "run.toml") == cfg
    assert RunConfig.load(tmp_path / "run.json") == cfg
    # A run directory's config.json wraps the config with provenance and check results.
    (tmp_path / "config.json").write_text(json.dumps({"bregzoo_run": 1, "config": cfg.to_dict(), "checks": []}))
    assert RunConfig.load(tmp_path) == cfg


@pytest.mark.parametrize("data, needle", [
    ({"trian": {}}, "unknown config key 'trian'"),
    ({"train": {"stepz": 1}}, "unknown config key 'train.stepz'"),
    ({"optim": {"lr": 1e-3}}, "lr_generator"),  # the message lists the valid keys
])
def test_unknown_keys_name_the_key_and_the_valid_ones(data, needle) -> None:
    with pytest.raises(BregzooError, match=needle):
        RunConfig.from_dict(data)


@pytest.mark.parametrize("data, needle", [
    ({"train": {"steps": 0}}, "train.steps must be > 0"),
    ({"train": {"batch_size": -1}}, "train.batch_size must be > 0"),
    ({"train": {"steps": 1.5}}, "must be int"),
    ({"train": {"steps": True}}, "must be int"),
    ({"optim": {"lr_generator": "fast"}}, "must be float"),
    ({"optim": {"betas": [0.9]}}, "2 entries"),
    ({"weighting": {"normalize": "mean"}}, "'none', 'batch' or 'ema-bins'"),
    ({"train": {"mixed_precision": "fp8"}}, "mixed_precision"),
    ({"divergence": "power:alpha"}, "malformed component spec"),
    ({"train": 3}, "must be a table"),
])
def test_validation(data, needle) -> None:
    with pytest.raises(BregzooError, match=needle):
        RunConfig.from_dict(data)


def test_component_tables_fold_into_spec_strings() -> None:
    cfg = RunConfig.from_dict({"divergence": {"name": "power", "alpha": 0.5}, "estimator": {"name": "bregman", "h": "lsif"}})
    assert cfg.divergence == "power:alpha=0.5"
    assert cfg.estimator == "bregman:h='lsif'"
    from bregzoo import create_ratio_estimator

    assert create_ratio_estimator(cfg.estimator).h.name == "lsif"


def test_replace_rejects_unknown_dotted_keys() -> None:
    with pytest.raises(BregzooError, match="unknown config"):
        RunConfig().replace(**{"train.nope": 1})
    with pytest.raises(BregzooError, match="unknown config section"):
        RunConfig().replace(**{"nope.steps": 1})


def test_invalid_toml_is_a_user_error() -> None:
    with pytest.raises(BregzooError, match="invalid TOML"):
        RunConfig.from_toml("steps = = 3")


def test_config_reads_are_bounded_and_only_regular_files(tmp_path) -> None:
    # --config /dev/zero read 6.6 GB in 24 s; a FIFO or device is refused before any read
    with pytest.raises(BregzooError, match="not a regular file"):
        RunConfig.load("/dev/zero")
    big = tmp_path / "big.json"
    big.write_text('{"train": {"steps": 1}}' + " " * (2**20 + 10))
    with pytest.raises(BregzooError, match="larger than 1 MiB"):
        RunConfig.load(big)
    ok = tmp_path / "ok.json"
    ok.write_text('{"train": {"steps": 3}}')
    assert RunConfig.load(ok).train.steps == 3
