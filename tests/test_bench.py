"""bregzoo bench: suite parsing, cell expansion, the leaderboard, resume, compare, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bregzoo import BregzooError, list_divergences
from bregzoo.bench import compare, expand, load_suite, parse_suite, run_suite, to_text, write_outputs
from bregzoo.bench.leaderboard import build, ranked_divergences, to_markdown
from bregzoo_cli.app import get_app
from conftest import TINY_SUITE as TINY


def tiny_suite(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def suite_data(**group) -> dict:
    g = {"name": "2d", "tasks": ["gmm8", "gmm25"], "divergences": ["reverse-kl", "bkl"], "seeds": 2, **group}
    return {"suite": {"name": "t"}, "config": {"train.steps": 7}, "group": [g]}


# -- suites and cells -------------------------------------------------------------------------------

def test_shipped_suites_parse_and_standard_covers_every_divergence():
    quick, standard = load_suite("quick"), load_suite("standard")
    assert len(expand(quick, quick.groups[0])) == 6  # 2 tasks x 3 divergences x 1 seed
    mixtures = [g for g in standard.groups if g.name != "digits"]
    assert {t for g in mixtures for t in g.tasks} == {"gmm8", "gmm25", "gmm-unbalanced", "gmm-rare", "gmm-hd:dim=16"}
    panel = {"reverse-kl", "kl", "lsif", "bkl", "hellinger"}  # omega = 1, 1/r, r, 1/(1+r), r^-1/2
    for group in mixtures:  # one task a group (each fits 2 hours on 2 cores), 5 seeds
        cells = expand(standard, group)
        everyone = group.tasks[0] in ("gmm8", "gmm25", "gmm-unbalanced")  # the new tasks run the panel
        assert {c.divergence for c in cells} == (set(list_divergences()) if everyone else panel)
        assert len(group.tasks) == 1
        assert {c.seed for c in cells} == set(range(5))
        assert cells[0].config.train.steps == 6000 and cells[0].config.weighting.normalize == "auto"
    v1 = load_suite("standard-v1")  # the committed results/standard still reproduces
    assert {c.task for c in expand(v1, v1.groups[0])} == {"gmm8", "gmm25", "gmm-unbalanced"}


def test_group_selects_groups_and_reads_its_rank_from_group(tmp_path, monkeypatch):
    import bregzoo.bench.runner as runner

    ran = []
    monkeypatch.setattr(runner, "run_cell", lambda cell, out: ran.append(cell.id) or {
        "id": cell.id, "group": cell.group, "task": cell.task, "divergence": cell.divergence, "estimator": "classifier",
        "seed": cell.seed, "status": "ok", "config_hash": cell.config_hash, "seconds": 1.0,
        "weighting_resolved": runner.resolved_weighting(cell),
        "student": {"mmd2": {"reverse-kl": 0.3, "bkl": 0.1, "lsif": 0.2}[cell.divergence]}, "teacher": {},
        "config": cell.config.replace(out=None).to_dict()})
    data = {"suite": {"name": "t"}, "config": {"train.steps": 7}, "group": [
        {"name": "a", "tasks": ["gmm8"], "divergences": ["reverse-kl", "bkl", "lsif"], "seeds": 1},
        {"name": "b", "tasks": ["gmm25"], "divergences": ["top:1"], "rank_from": "a", "seeds": 1}]}
    suite = parse_suite(data)
    run = run_suite(suite, tmp_path, groups="a")
    assert run.ran == 3 and all(c.startswith("a--") for c in ran)
    ran.clear()
    run = run_suite(suite, tmp_path, groups="b")  # ranks from a's finished cells without running them
    assert ran == ["b--gmm25--bkl--classifier--s0"] and run.ran == 1


@pytest.mark.parametrize("data, where", [
    ({"suite": {"name": "x"}, "grop": []}, "'grop'"),
    ({"suite": {"nam": "x"}, "group": [{"name": "g", "tasks": ["gmm8"], "divergences": ["kl"]}]}, "'nam'"),
    ({"group": [{"name": "g", "tasks": ["gmm8"], "divergences": ["kl"], "seed": 3}]}, "'seed'"),
    ({"config": {"train.stepz": 3}, "group": [{"name": "g", "tasks": ["gmm8"], "divergences": ["kl"]}]}, "stepz"),
    ({"group": [{"name": "g", "tasks": ["gmm8"]}]}, "'divergences'"),
    ({"group": [{"name": "g", "tasks": ["gmm8"], "divergences": ["top:2"], "rank_from": "nope"}]}, "rank_from"),
])
def test_suite_errors_name_the_bad_key(data, where):
    with pytest.raises(BregzooError, match=where):
        parse_suite(data)


def test_unknown_suite_name_lists_the_known_ones():
    with pytest.raises(BregzooError, match="known suites: .*quick.*standard"):
        load_suite("nosuch")


def test_cells_share_one_budget_and_differ_only_in_their_coordinates():
    suite = parse_suite(suite_data(config={"train.batch_size": 16}))
    cells = expand(suite, suite.groups[0])
    assert len(cells) == 2 * 2 * 2 and len({c.id for c in cells}) == len(cells)
    for c in cells:
        assert c.config.train.steps == 7 and c.config.train.batch_size == 16
        assert (c.config.task, c.config.divergence, c.config.train.seed) == (c.task, c.divergence, c.seed)
    base = {json.dumps(c.config.replace(task="x", divergence="x", **{"train.seed": 0}).to_dict()) for c in cells}
    assert len(base) == 1
    assert [c.divergence for c in expand(suite, suite.groups[0], divergence="b*")] == ["bkl"] * 4
    assert len(expand(suite, suite.groups[0], seeds=1, task="gmm25")) == 2


def test_star_picks_up_every_registered_divergence_and_specs_pass_through():
    suite = parse_suite(suite_data(divergences=["*", "power:alpha=0.25"], seeds=1, tasks=["gmm8"]))
    divs = [c.divergence for c in expand(suite, suite.groups[0])]
    assert divs == list_divergences() + ["power:alpha=0.25"]
    with pytest.raises(BregzooError, match="matches no registered divergence"):
        expand(parse_suite(suite_data(divergences=["zz*"])), parse_suite(suite_data(divergences=["zz*"])).groups[0])


def test_config_hash_changes_with_the_budget():
    a = expand(parse_suite(suite_data()), parse_suite(suite_data()).groups[0])[0]
    b_suite = parse_suite({**suite_data(), "config": {"train.steps": 8}})
    assert a.id == expand(b_suite, b_suite.groups[0])[0].id
    assert a.config_hash != expand(b_suite, b_suite.groups[0])[0].config_hash


# -- the leaderboard, from synthetic results ---------------------------------------------------------

def record(div: str, seed: int, mmd2: float | None, task: str = "gmm8", precision: float = 0.5) -> dict:
    return {"id": f"{task}-{div}-{seed}", "group": "2d", "task": task, "divergence": div, "estimator": "classifier",
            "seed": seed, "status": "ok", "seconds": 1.0, "steps": 7,
            "student": {"mmd2": mmd2, "precision": precision}, "teacher": {"mmd2": 1e-4, "precision": 0.99},
            "provenance": {"dist": "bregzoo", "version": "0.1.0"},
            "config": {"train": {"steps": 7, "batch_size": 8, "fake_updates": 2}, "optim": {"lr_generator": 1e-3},
                       "eval": {"samples": 64, "teacher_steps": 40, "teacher_sampler": "heun"},
                       "backbone": "mlp", "schedule": "vp", "teacher": "analytic-gmm"}}


def test_leaderboard_ranks_by_mean_computes_delta_and_puts_failures_last():
    suite = parse_suite(suite_data())
    results = [record("reverse-kl", 0, 0.02), record("reverse-kl", 1, 0.04),
               record("bkl", 0, 0.01), record("bkl", 1, 0.02),
               record("lsif", 0, 0.001), record("lsif", 1, None)]  # lsif diverged on seed 1
    t = build(suite, results)["tasks"]["gmm8"]
    assert [r["name"] for r in t["rows"]] == ["bkl", "reverse-kl", "lsif"]
    bkl = t["rows"][0]
    assert bkl["metrics"]["mmd2"]["mean"] == pytest.approx(0.015)
    assert bkl["metrics"]["mmd2"]["std"] == pytest.approx(0.00707, rel=1e-3)
    assert bkl["delta_vs_baseline_pct"]["mmd2"] == pytest.approx(-50.0)
    assert t["rows"][2]["metrics"]["mmd2"]["failed"] == 1
    assert t["teacher"]["metrics"]["mmd2"]["mean"] == pytest.approx(1e-4) and t["teacher"]["metrics"]["mmd2"]["n"] == 2
    assert ranked_divergences(suite, results)["2d"][:2] == ["bkl", "reverse-kl"]


def test_groups_that_share_a_task_get_their_own_sections_and_baselines():
    suite = parse_suite(suite_data())
    short = [record("reverse-kl", s, 0.02) for s in (0, 1)] + [record("kl", s, 0.01) for s in (0, 1)]
    long = [{**record("reverse-kl", s, 0.002), "group": "long"} for s in (0, 1)]
    board = build(suite, short + long)
    assert list(board["tasks"]) == ["gmm8 · 2d", "gmm8 · long"]  # never pooled: each group has its own budget
    kl = next(r for r in board["tasks"]["gmm8 · 2d"]["rows"] if r["name"] == "kl")
    assert kl["seeds"] == [0, 1] and kl["delta_vs_baseline_pct"]["mmd2"] == pytest.approx(-50.0)
    assert board["tasks"]["gmm8 · long"]["rows"][0]["metrics"]["mmd2"]["mean"] == pytest.approx(0.002)
    assert list(build(suite, short)["tasks"]) == ["gmm8"]  # one group: the section is the task


def test_curves_figure_draws_each_seed_of_each_row_and_is_skipped_without_curves(tmp_path):
    from bregzoo.bench.plots import curves_of, save_curves_png

    suite = parse_suite(suite_data())
    results = [record("reverse-kl", s, 0.02) for s in (0, 1)] + [record("kl", 0, 0.01)]
    assert save_curves_png(tmp_path / "c.png", build(suite, results), results) is None  # final point only
    assert not (tmp_path / "c.png").exists()
    for i, r in enumerate(results):
        r["curve"] = [{"step": 5, "mmd2": 0.1 + i}, {"step": 7, "mmd2": r["student"]["mmd2"]}, {"step": 7}]
    board = build(suite, results)
    curves = curves_of(board, results)
    assert curves["gmm8"]["reverse-kl"] == {0: [(5, 0.1), (7, 0.02)], 1: [(5, 1.1), (7, 0.02)]}
    assert curves["gmm8"]["kl"] == {0: [(5, 2.1), (7, 0.01)]}
    assert save_curves_png(tmp_path / "c.png", board, results).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_markdown_names_a_rank_bought_with_dropped_modes():
    suite = parse_suite(suite_data())

    def rec(div, seed, mmd2, modes):
        r = record(div, seed, mmd2, task="gmm25")
        r["student"]["modes_covered"], r["teacher"]["modes_covered"] = modes, 25
        return r

    results = [rec("reverse-kl", s, 0.008, 11) for s in (0, 1)] + [rec("kl", s, 0.009, 20) for s in (0, 1)] + \
              [rec("js", s, 0.010, 11.5) for s in (0, 1)]
    board = build(suite, results)
    text = to_markdown(board)
    assert "Trade-off" in text and "#1 reverse-kl covers 11 modes, #2 kl 20" in text and "(teacher sampler: 25)" in text
    assert "js covers" not in text  # half a mode fewer than nothing below it: not a trade
    even = [rec("reverse-kl", 0, 0.008, 20), rec("kl", 0, 0.009, 20.5)]
    assert "Trade-off" not in to_markdown(build(suite, even))


def test_higher_is_better_metric_ranks_descending():
    suite = parse_suite({**suite_data(), "leaderboard": {"primary": "precision", "higher_is_better": ["precision"]}})
    results = [record("reverse-kl", 0, 0.1, precision=0.3), record("bkl", 0, 0.2, precision=0.9)]
    assert [r["name"] for r in build(suite, results)["tasks"]["gmm8"]["rows"]] == ["bkl", "reverse-kl"]


def test_compare_reports_rank_moves_and_changes():
    suite = parse_suite(suite_data())
    a = build(suite, [record("reverse-kl", 0, 0.02), record("bkl", 0, 0.03)])
    b = build(suite, [record("reverse-kl", 0, 0.02), record("bkl", 0, 0.01), record("lsif", 0, 0.05),
                      record("kl", 0, 0.01, task="gmm25")])
    diff = compare(a, b)
    assert diff["tasks_added"] == ["gmm25"] and diff["tasks"]["gmm8"]["added"] == ["lsif"]
    bkl = next(r for r in diff["tasks"]["gmm8"]["rows"] if r["name"] == "bkl")
    assert (bkl["rank_a"], bkl["rank_b"], bkl["change_pct"]) == (2, 1, pytest.approx(-66.667, rel=1e-3))
    text = to_text(diff)
    assert "bkl: rank 2 -> 1 (up 1)" in text and "only in B: lsif" in text and "tasks only in B: gmm25" in text


# -- running: end to end, resume, failures ------------------------------------------------------------

def test_cli_runs_a_tiny_suite_end_to_end_then_resumes_only_the_missing_cell(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(get_app(), ["bench", "--suite", str(tiny_suite(tmp_path)), "--out", str(out),
                                         "--workers", "1"])
    assert res.exit_code == 0, res.output
    for ext in ("md", "csv", "json", "png"):
        assert (out / f"leaderboard.{ext}").stat().st_size > 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert set(board["tasks"]) == {"gmm8", "gmm25"}
    assert {r["name"] for r in board["tasks"]["gmm8"]["rows"]} == {"reverse-kl", "lsif"}
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "leaderboard.md").read_text()
    assert "teacher sampler" in md and "Δmmd2 vs reverse-kl" in md and "bregzoo 0.1.0" in md
    assert "4 cells run, 0 reused" in res.output
    assert not (out / "work").exists() or not any((out / "work").iterdir())  # scratch run dirs are removed

    cells = sorted((out / "cells").glob("*.json"))
    assert len(cells) == 4
    before = {p.name: p.read_text() for p in cells}
    cells[1].unlink()
    suite = load_suite(tiny_suite(tmp_path))
    seen = []
    run = run_suite(suite, out, workers=1, on_cell=lambda c, rec, d, t: seen.append(c.id))
    assert (run.ran, run.reused) == (1, 3) and seen == [cells[1].stem]
    assert {p.name: p.read_text() for p in sorted((out / "cells").glob("*.json")) if p != cells[1]} == \
        {k: v for k, v in before.items() if k != cells[1].name}

    cells[0].unlink()
    res = CliRunner().invoke(get_app(), ["bench", "--suite", str(tiny_suite(tmp_path)), "--out", str(out),
                                         "--report-only"])
    assert res.exit_code == 0 and "1 cells not finished yet" in res.output and "0 cells run, 3 reused" in res.output
    assert len(json.loads((out / "leaderboard.json").read_text())["tasks"]["gmm8"]["rows"]) + \
        len(json.loads((out / "leaderboard.json").read_text())["tasks"]["gmm25"]["rows"]) == 3

    res = CliRunner().invoke(get_app(), ["bench", "--compare", str(out / "leaderboard.json"),
                                         str(out / "leaderboard.json")])
    assert res.exit_code == 0 and "(same)" in res.output

    res = CliRunner().invoke(get_app(), ["bench", "--suite", str(tiny_suite(tmp_path)), "--out",
                                         str(tmp_path / "empty"), "--report-only"])
    assert res.exit_code == 2 and "no finished cell" in res.output and "Traceback" not in res.output


def test_a_failing_cell_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    import bregzoo.train

    real = bregzoo.train.train

    def flaky(cfg, **kw):
        if cfg.divergence == "lsif":
            raise FloatingPointError("loss is nan")
        return real(cfg, **kw)

    monkeypatch.setattr(bregzoo.train, "train", flaky)
    suite = load_suite(tiny_suite(tmp_path))
    run = run_suite(suite, tmp_path / "out", workers=1, task="gmm8")
    by = {r["divergence"]: r for r in run.results}
    assert by["lsif"]["status"] == "failed" and "loss is nan" in by["lsif"]["error"]
    assert by["reverse-kl"]["status"] == "ok"
    board = write_outputs(suite, run, tmp_path / "out")
    assert board["tasks"]["gmm8"]["rows"][-1]["name"] == "lsif"
    assert "1 runs failed" in (tmp_path / "out" / "leaderboard.md").read_text()


def test_group_with_missing_requirement_is_skipped_with_its_note(tmp_path):
    data = suite_data(seeds=1, tasks=["gmm8"], divergences=["reverse-kl"], requires=["no/such/teacher"],
                      missing_note="needs a digits teacher")
    run = run_suite(parse_suite(data), tmp_path, workers=1)
    assert run.results == [] and run.skipped[0]["note"] == "needs a digits teacher"
    res = CliRunner().invoke(get_app(), ["bench", "--suite", "standard", "--task", "nothing", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no cell of suite 'standard'" in res.output


@pytest.mark.slow
def test_quick_suite_through_the_cli_with_two_workers(tmp_path):
    res = CliRunner().invoke(get_app(), ["bench", "--suite", "quick", "--out", str(tmp_path), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert all((tmp_path / f"leaderboard.{e}").exists() for e in ("md", "csv", "json", "png"))
    assert len(list((tmp_path / "cells").glob("*.json"))) == 6


def test_a_stored_cell_survives_a_new_config_field_but_not_a_changed_value():
    from bregzoo.bench.runner import same_config

    now = {"train": {"steps": 3, "new_field": True}, "task": "gmm8"}
    assert same_config({"train": {"steps": 3}, "task": "gmm8"}, now)
    assert not same_config({"train": {"steps": 4}, "task": "gmm8"}, now)
    assert not same_config({"train": {"steps": 3, "gone": 1}, "task": "gmm8"}, now)


def test_a_stored_cell_is_reused_only_with_the_weighting_it_would_resolve_to_now(tmp_path):
    # "auto" is the divergence's default: a cell that ran with an older default must run again.
    from bregzoo.bench.runner import cell_path, load_done, resolved_weighting

    suite = parse_suite(suite_data(seeds=1, tasks=["gmm8"], divergences=["lsif"]))
    cell = expand(suite, suite.groups[0])[0]
    now = resolved_weighting(cell)
    assert (now["normalize"], now["truncate"]) == ("ema-bins", 1.5)  # resolved, not "auto"
    rec = {"status": "ok", "config_hash": cell.config_hash, "config": cell.config.replace(out=None).to_dict()}
    cell_path(tmp_path, cell).parent.mkdir()
    for stored, reused in ((now, True), ({**now, "truncate": 2.0}, False), (None, False)):
        cell_path(tmp_path, cell).write_text(json.dumps({**rec, "weighting_resolved": stored} if stored else rec))
        assert (load_done(tmp_path, cell) is not None) is reused


def test_a_smoke_suite_says_it_ranks_nothing(tmp_path):
    from bregzoo.bench.leaderboard import to_markdown
    from bregzoo.bench.plots import _modes

    results = [record("reverse-kl", 0, 0.02), record("bkl", 0, 0.01)]
    smoke = parse_suite({**suite_data(), "suite": {"name": "t", "smoke": True}})
    assert "Smoke test" in to_markdown(build(smoke, results))
    assert "Smoke test" not in to_markdown(build(parse_suite(suite_data()), results))
    assert load_suite("quick").smoke and not load_suite("standard").smoke
    assert len(_modes("gmm8")) == 8 and _modes("nosuch") == []  # the montage marks each task's modes


# -- k-step students in the grid ----------------------------------------------------------------------

def test_student_steps_is_a_grid_axis_in_the_cell_id_and_config():
    suite = parse_suite(suite_data(student_steps=[1, 2, 4], seeds=1, tasks=["gmm8"]))
    cells = expand(suite, suite.groups[0])
    assert len(cells) == 2 * 3 and len({c.id for c in cells}) == 6 and len({c.config_hash for c in cells}) == 6
    assert [(c.divergence, c.student_steps, c.config.train.student_steps) for c in cells[:3]] == [
        ("reverse-kl", 1, 1), ("reverse-kl", 2, 2), ("reverse-kl", 4, 4)]
    # a one-step cell keeps the id it had before the axis existed; k > 1 is named before the seed
    assert [c.id for c in cells[:3]] == ["2d--gmm8--reverse-kl--classifier--s0", "2d--gmm8--reverse-kl--classifier--k2--s0",
                                         "2d--gmm8--reverse-kl--classifier--k4--s0"]
    plain = parse_suite(suite_data(seeds=1, tasks=["gmm8"]))
    assert [c.id for c in expand(plain, plain.groups[0])] == [c.id for c in cells if c.student_steps == 1]
    # without the axis, a k set in the group's config is kept (not reset to 1)
    fixed = parse_suite(suite_data(seeds=1, tasks=["gmm8"], config={"train.student_steps": 3}))
    assert {(c.student_steps, c.config.train.student_steps) for c in expand(fixed, fixed.groups[0])} == {(3, 3)}
    assert {c.id.split("--")[-2] for c in expand(fixed, fixed.groups[0])} == {"k3"}


@pytest.mark.parametrize("steps", [[0, 2], [2, 2], [], ["4"], 1.5, [True]])
def test_bad_student_steps_in_a_suite_name_the_key(steps):
    with pytest.raises(BregzooError, match=r"group\[0\]\.student_steps"):
        parse_suite(suite_data(student_steps=steps))


def test_a_k_the_configured_levels_cannot_have_fails_when_the_suite_is_read():
    with pytest.raises(BregzooError, match="has 2 levels but train.student_steps is 4"):
        parse_suite(suite_data(student_steps=[2, 4], config={"train.student_steps": 2, "train.student_times": [2.0, 0.5]}))


def test_leaderboard_has_a_row_per_k_with_the_delta_against_reverse_kl_at_the_same_k():
    suite = parse_suite(suite_data(student_steps=[1, 4]))
    results = []
    for k, base in ((1, 0.02), (4, 0.01)):
        for div, mmd in (("reverse-kl", base), ("lsif", base * 1.5)):
            results += [{**record(div, s, mmd), "student_steps": k, "id": f"{div}-{k}-{s}"} for s in (0, 1)]
    rows = {r["name"]: r for r in build(suite, results)["tasks"]["gmm8"]["rows"]}
    assert set(rows) == {"reverse-kl / k=1", "lsif / k=1", "reverse-kl / k=4", "lsif / k=4"}
    assert rows["reverse-kl / k=4"]["rank"] == 1 and rows["lsif / k=4"]["student_steps"] == 4
    assert rows["lsif / k=4"]["delta_vs_baseline_pct"]["mmd2"] == pytest.approx(50.0)
    assert rows["lsif / k=1"]["delta_vs_baseline_pct"]["mmd2"] == pytest.approx(50.0)
    # records from before the axis read as one-step, and one k alone adds nothing to the names
    old = [record("reverse-kl", 0, 0.02), record("lsif", 0, 0.03)]
    assert {r["name"] for r in build(suite, old)["tasks"]["gmm8"]["rows"]} == {"reverse-kl", "lsif"}


def test_a_suite_with_a_k_axis_runs_records_k_and_resumes(tmp_path):
    text = TINY.replace('divergences = ["reverse-kl", "lsif"]', 'divergences = ["reverse-kl"]\nstudent_steps = [1, 2]')
    path = tmp_path / "k.toml"
    path.write_text(text.replace('tasks = ["gmm8", "gmm25"]', 'tasks = ["gmm8"]'))
    out = tmp_path / "out"
    res = CliRunner().invoke(get_app(), ["bench", "--suite", str(path), "--out", str(out), "--workers", "1"],
                             env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    recs = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert set(recs) == {"2d--gmm8--reverse-kl--classifier--s0", "2d--gmm8--reverse-kl--classifier--k2--s0"}
    assert recs["2d--gmm8--reverse-kl--classifier--k2--s0"]["student_steps"] == 2
    assert recs["2d--gmm8--reverse-kl--classifier--k2--s0"]["config"]["train"]["student_steps"] == 2
    assert all(r["status"] == "ok" for r in recs.values())
    board = json.loads((out / "leaderboard.json").read_text())
    assert {r["name"] for r in board["tasks"]["gmm8"]["rows"]} == {"reverse-kl / k=1", "reverse-kl / k=2"}
    assert "reverse-kl / k=2" in res.output
    run = run_suite(load_suite(path), out, workers=1)
    assert (run.ran, run.reused) == (0, 2)


# -- failed cells: never cached as results, never ranked ------------------------------------------------------

def test_a_failed_cell_is_not_cached_as_a_result_and_runs_again(tmp_path):
    path = tmp_path / "failing.toml"
    path.write_text(TINY.replace('tasks = ["gmm8", "gmm25"]', 'tasks = ["gmm8"]')
                    .replace('divergences = ["reverse-kl", "lsif"]', 'divergences = ["power:alpha=nan"]'))
    suite, out = load_suite(path), tmp_path / "out"
    for _ in range(2):  # the second invocation runs the cell again: a failure is no result
        run = run_suite(suite, out, workers=1)
        assert (run.ran, run.reused) == (1, 0) and run.results[0]["status"] == "failed"
    assert not (out / "cells").exists() or not list((out / "cells").glob("*.json"))
    failed = json.loads(next((out / "failed").glob("*.json")).read_text())  # kept apart, for its error
    assert "alpha" in failed["error"] and failed["traceback"]
    (out / "cells").mkdir(exist_ok=True)  # a failure cached by an older bregzoo is not reused either
    (out / "cells" / f"{failed['id']}.json").write_text(json.dumps(failed))
    assert run_suite(suite, out, workers=1).reused == 0

    board = write_outputs(suite, run, out)
    row = board["tasks"]["gmm8"]["rows"][0]
    assert row["rank"] is None and row["failed_runs"] == 1
    md = (out / "leaderboard.md").read_text()
    assert "| failed | power:alpha=nan (1 runs failed) |" in md
    assert "None" not in md and "*teacher sampler* (heun, 4 steps)" in md


def test_a_divergence_that_failed_on_any_seed_is_never_ranked_and_is_listed_below_the_ranking():
    suite = parse_suite(suite_data())
    failed = {**record("power", 0, None), "status": "failed", "error": "NonFiniteError: step 3", "student": {}}
    results = [record("reverse-kl", 0, 0.02), record("reverse-kl", 1, 0.04), record("bkl", 0, 0.01),
               record("bkl", 1, 0.02), record("lsif", 0, 0.001), {**record("lsif", 1, None), "status": "failed"},
               failed, {**failed, "seed": 1}]
    board = build(suite, results)
    t = board["tasks"]["gmm8"]
    assert [(r["name"], r["rank"]) for r in t["rows"]] == [("bkl", 1), ("reverse-kl", 2), ("lsif", None),
                                                           ("power", None)]
    assert ranked_divergences(suite, results)["2d"] == ["bkl", "reverse-kl"]
    assert [name for name in board["summary"]["rows"]][:2] == ["bkl", "reverse-kl"]
    md = to_markdown(board)
    ranked, unranked = md.index("| 2 | **reverse-kl**"), md.index("| failed | lsif (1 runs failed)")
    assert ranked < unranked < md.index("| failed | power (2 runs failed)")
    diff = to_text(compare(board, build(suite, results[:6] + [record("power", 0, 0.5), record("power", 1, 0.5)])))
    assert "power: rank failed -> 3" in diff


def test_a_cell_stores_its_curve_when_the_suite_evaluates_during_training(tmp_path):
    text = TINY.replace('"train.steps" = 2', '"train.steps" = 4').replace('"train.eval_every" = 1000',
                                                                        '"train.eval_every" = 2')
    text = text.replace('tasks = ["gmm8", "gmm25"]', 'tasks = ["gmm8"]').replace('["reverse-kl", "lsif"]', '["reverse-kl"]')
    path = tmp_path / "curve.toml"
    path.write_text(text)
    out = tmp_path / "out"
    run_suite(load_suite(path), out, workers=1)
    (cell,) = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert cell["status"] == "ok"
    assert [p["step"] for p in cell["curve"]] == [2, 4]
    assert all(isinstance(p.get("mmd2"), float) for p in cell["curve"])  # the last point is the final evaluation
