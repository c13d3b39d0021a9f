"""``bregzoo alpha-sweep``, the command this plugin adds through register_commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bregzoo_cli.app import get_app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(get_app(), ["alpha-sweep", *args])


def test_json_rows_give_the_weights_and_the_matching_zoo_members():
    res = invoke("--alphas=-1,0,1,3", "--ratios=0.25,4", "--json")
    assert res.exit_code == 0, res.output
    rows = {row["alpha"]: row for row in json.loads(res.output)}
    for a, row in rows.items():  # omega(r) = r^((alpha - 1)/2)
        assert row["omega"]["0.25"] == pytest.approx(0.25 ** ((a - 1) / 2), rel=1e-12)
        assert row["omega"]["4.0"] == pytest.approx(4.0 ** ((a - 1) / 2), rel=1e-12)
    same = {a: {s["name"]: s["factor"] for s in row["same_weight_as"]} for a, row in rows.items()}
    assert same[-1.0] == pytest.approx({"kl": 1.0})
    assert same[0.0] == pytest.approx({"hellinger": 0.5})
    assert {"reverse-kl", "ukl"} <= set(same[1.0])
    assert {"lsif", "squared"} <= set(same[3.0])


def test_table_and_plot(tmp_path):
    png = tmp_path / "w.png"
    res = invoke("--alphas=0.5,2", "--plot", str(png))
    assert res.exit_code == 0, res.output
    assert "Amari alpha-divergences" in res.output and "power (x1.5)" in res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--alphas=one"], "--alphas must be comma-separated numbers"),
    (["--ratios=0,1"], "--ratios must be positive"),
    (["--alphas=nan"], "at least one finite number"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    res = invoke(*args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_check_runs_bregzoo_claims_for_each_alpha():
    res = invoke("--alphas=-1,0.5", "--check", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert all(row["claims"]["total"] > 0 and not row["claims"]["failed"] for row in rows)
