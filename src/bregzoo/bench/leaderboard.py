"""The leaderboard: per task, one row per divergence (mean ± std over seeds), ranked by the task's
primary metric, with the delta vs ``reverse-kl`` (the DMD baseline), the teacher sampler's row and the
exact-sample row (the metric's noise floor).

Each row also carries a 95% bootstrap interval of its primary metric's mean and a paired test against
reverse-kl on the same seeds, Holm-corrected across the task's rows (``bregzoo.bench.stats``): a row is
called better or worse only when that test says so. A summary across tasks collects the verdicts.
A suite with more than one estimator, or more than one k of k-step students, gets a row for each
(``lsif / k=4``); the delta is then against reverse-kl with the same k. A task that several groups run
(each group its own budget) gets a section per group, ``digits · lr1e-4``: their cells are never pooled.

Outputs: ``leaderboard.json`` (everything), ``leaderboard.csv`` (one line per row and metric),
``leaderboard.md`` (the human view); the PNG is drawn by ``bregzoo.bench.plots``.
"""

from __future__ import annotations

import csv
import io as _io
import math
import statistics
from collections import defaultdict
from typing import Any

from bregzoo.bench.stats import bootstrap_ci, paired_test, verdicts
from bregzoo.bench.suite import Suite

BASELINE = "reverse-kl"
TEACHER = "teacher"
FLOOR = "exact samples"


def steps_of(rec: dict[str, Any]) -> int:
    """The k of a cell record (records from before k-step students are one-step)."""
    return int(rec.get("student_steps", 1))


def section_of(results: list[dict[str, Any]]):
    """The board section of a cell record: its task, or ``task · group`` when more than one group runs
    that task (groups may differ in budget, so their cells must not share a row or a baseline)."""
    groups: dict[str, set] = defaultdict(set)
    for r in results:
        groups[r["task"]].add(r.get("group"))
    return lambda r: r["task"] if len(groups[r["task"]]) <= 1 else f"{r['task']} · {r['group']}"


def _row_key(rec: dict[str, Any], estimators: set[str], ks: set[int] = frozenset({1})) -> str:
    key = rec["divergence"] if len(estimators) <= 1 else f"{rec['divergence']} / {rec['estimator']}"
    return key if len(ks) <= 1 else f"{key} / k={steps_of(rec)}"


def _stats(values: list[float | None]) -> dict[str, Any]:
    ok = [v for v in values if v is not None and math.isfinite(v)]
    return {"mean": statistics.fmean(ok) if ok else None,
            "std": statistics.stdev(ok) if len(ok) > 1 else None,  # one seed: no spread to report
            "n": len(ok), "failed": len(values) - len(ok)}


def _delta(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return 100.0 * (value - base) / abs(base)


def build(suite: Suite, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The leaderboard dict: ``{"suite", "tasks": {task: {"primary", "rows": [...]}}}``."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    section = section_of(results)
    for rec in results:
        by_task[section(rec)].append(rec)
    tasks = {}
    for task, recs in by_task.items():
        primary = suite.primary_of(recs[0]["task"])
        higher = primary in suite.higher_is_better
        estimators, ks = {r["estimator"] for r in recs}, {steps_of(r) for r in recs}
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in recs:
            groups[_row_key(r, estimators, ks)].append(r)
        metrics = sorted({k for r in recs for k in (r.get("student") or {})} |
                         {k for r in recs for k in (r.get("teacher") or {})} | {primary})  # primary: every cell failed
        rows = []
        for key, rs in groups.items():
            ok = [r for r in rs if r.get("status") == "ok"]
            rows.append({
                "name": key, "divergence": rs[0]["divergence"], "estimator": rs[0]["estimator"],
                "student_steps": steps_of(rs[0]),
                "seeds": sorted(r["seed"] for r in rs), "failed_runs": len(rs) - len(ok),
                "errors": sorted({r["error"] for r in rs if r.get("error")}),
                "metrics": {m: _stats([(r.get("student") or {}).get(m) for r in ok]) for m in metrics},
                "seconds": statistics.fmean(r["seconds"] for r in rs) if rs else None,
                "steps": ok[0].get("steps") if ok else None,
                "dist": rs[0].get("provenance", {}).get("dist", "?"),
                "version": rs[0].get("provenance", {}).get("version", "?"),
                "per_seed": {r["seed"]: (r.get("student") or {}).get(primary) for r in ok},
            })
        # Rank by the primary metric's mean. A row with a failed run, or whose primary metric is not finite
        # on every seed, is not ranked (rank None): its mean would be over the seeds that survived. It is
        # listed below the ranked rows, as failed.
        def sort_key(row: dict[str, Any]) -> tuple:
            m = row["metrics"].get(primary, {}).get("mean")
            return (not _rankable(row, primary), m is None, 0.0 if m is None else -m if higher else m)

        rows.sort(key=sort_key)
        for i, row in enumerate(rows, 1):
            row["rank"] = i if _rankable(row, primary) else None
        for row in rows:
            base = next((r for r in rows if r["divergence"] == BASELINE and r["student_steps"] == row["student_steps"]),
                        None)
            row["delta_vs_baseline_pct"] = {
                m: _delta(row["metrics"][m]["mean"], base["metrics"][m]["mean"] if base else None) for m in metrics}
        _test_against_baseline(rows, higher)
        teacher_ok = [r for r in recs if r.get("status") == "ok"]
        teacher_seen = {}  # one teacher evaluation per seed (it does not depend on the divergence)
        for r in teacher_ok:
            teacher_seen.setdefault(r["seed"], r.get("teacher") or {})
        sampler = recs[0]["config"]["eval"]  # every cell's config has it, a failed cell's too: the same budget
        teacher = {"name": TEACHER, "metrics": {m: _stats([t.get(m) for t in teacher_seen.values()]) for m in metrics},
                   "steps": sampler["teacher_steps"], "sampler": sampler["teacher_sampler"]}
        exact_seen = {}  # the task's own samples, once per seed: the noise floor of each metric
        for r in teacher_ok:
            if r.get("exact"):
                exact_seen.setdefault(r["seed"], r["exact"])
        floor = {"name": FLOOR, "metrics": {m: _stats([e.get(m) for e in exact_seen.values()]) for m in metrics}}
        tasks[task] = {"primary": primary, "higher_is_better": higher, "metrics": metrics, "rows": rows,
                       "teacher": teacher, "floor": floor if exact_seen else None,
                       "baseline": BASELINE if any(r["divergence"] == BASELINE for r in rows) else None,
                       "budget": _budget(recs)}
    return {"bregzoo_leaderboard": 1, "suite": suite.name, "source": suite.source, "smoke": suite.smoke,
            "tasks": tasks, "summary": summary(tasks)}


def _rankable(row: dict[str, Any], primary: str) -> bool:
    s = row["metrics"].get(primary, {})
    return row["failed_runs"] == 0 and s.get("mean") is not None and s.get("failed", 0) == 0


def _test_against_baseline(rows: list[dict[str, Any]], higher: bool) -> None:
    """Each row's bootstrap CI of its primary metric, and its Holm-corrected paired test against the
    baseline with the same k (``row["vs_baseline"]``; None for the baseline itself or too few seeds)."""
    tests = {}
    for row in rows:
        row["ci"] = bootstrap_ci(list(row["per_seed"].values()))
        base = next((r for r in rows if r["divergence"] == BASELINE and r["student_steps"] == row["student_steps"]),
                    None)
        if base is not None and base is not row:
            tests[row["name"]] = paired_test(row["per_seed"], base["per_seed"])
    tested = verdicts(tests, higher)
    for row in rows:
        t = tested.get(row["name"])
        row["vs_baseline"] = None if t is None else {"n": t.n, "scale": t.scale, "ratio": t.ratio, "diff": t.mean_diff,
                                                     "p": t.p, "p_holm": t.p_holm, "verdict": t.verdict}


def summary(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Across tasks: per row name, its verdict against reverse-kl and its rank on each task, and the counts."""
    rows: dict[str, dict[str, Any]] = {}
    for task, t in tasks.items():
        of = sum(r["rank"] is not None for r in t["rows"])
        for r in t["rows"]:
            entry = rows.setdefault(r["name"], {"tasks": {}, "better": 0, "worse": 0, "same": 0})
            v = r.get("vs_baseline")
            entry["tasks"][task] = {"rank": r["rank"], "of": of, "verdict": v["verdict"] if v else None,
                                    "ratio": v["ratio"] if v else None}
            if v and v["verdict"] == "better":
                entry["better"] += 1
            elif v and v["verdict"] == "worse":
                entry["worse"] += 1
            elif v and v["verdict"] == "no significant difference":
                entry["same"] += 1
    for entry in rows.values():  # over the tasks where the row is ranked; failed on any task: listed after the rest
        ranked = [x for x in entry["tasks"].values() if x["rank"] is not None]
        entry["mean_rank"] = statistics.fmean(x["rank"] for x in ranked) if ranked else None
        # Tasks may rank different sets (the whole zoo on one, a panel of five on another): #3 of 5 is further
        # down than #3 of 13, so rows are ordered by the mean position, 0 = first and 1 = last on each task.
        entry["mean_position"] = (statistics.fmean((x["rank"] - 1) / max(x["of"] - 1, 1) for x in ranked)
                                  if ranked else None)
        entry["failed_tasks"] = sum(x["rank"] is None for x in entry["tasks"].values())
    key = lambda kv: (kv[1]["failed_tasks"], kv[1]["mean_position"] is None, kv[1]["mean_position"] or 0.0, kv[0])  # noqa: E731
    return {"tasks": list(tasks), "rows": dict(sorted(rows.items(), key=key))}


def _budget(recs: list[dict[str, Any]]) -> dict[str, Any]:
    c = recs[0]["config"]
    return {"steps": c["train"]["steps"], "batch_size": c["train"]["batch_size"],
            "fake_updates": c["train"]["fake_updates"], "lr_generator": c["optim"]["lr_generator"],
            "eval_samples": c["eval"]["samples"], "backbone": c["backbone"], "schedule": c["schedule"],
            "teacher": c["teacher"]}


def ranked_divergences(suite: Suite, results: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per group: its divergences ordered by mean rank over the group's tasks (best first), for ``top:N``."""
    out = {}
    for group in suite.groups:
        recs = [r for r in results if r["group"] == group.name]
        if not recs:
            continue
        ranks: dict[str, list[int | None]] = defaultdict(list)
        for task in build(suite, recs)["tasks"].values():
            for row in task["rows"]:
                ranks[row["divergence"]].append(row["rank"])
        # A divergence that failed on every task is not ranked at all; one that failed on some comes after the rest.
        ranked = {d: [r for r in rs if r is not None] for d, rs in ranks.items()}
        out[group.name] = sorted((d for d in ranks if ranked[d]),
                                 key=lambda d: (len(ranks[d]) - len(ranked[d]), statistics.fmean(ranked[d]), d))
    return out


# -- rendering --------------------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}"


def _cell(s: dict[str, Any]) -> str:
    if not s or s.get("mean") is None:
        return "failed"
    text = f"{_fmt(s['mean'])} ± {s['std']:.2g}" if s.get("std") is not None else f"{_fmt(s['mean'])} (1 seed)"
    return text + (f" ({s['failed']} failed)" if s.get("failed") else "")


def rank_text(rank: int | None) -> str:
    """A row's rank as shown: its number, or "failed" for a row that is not ranked."""
    return "failed" if rank is None else str(rank)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f}%"


def _ci(ci: Any) -> str:
    return "—" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _verdict(v: dict[str, Any] | None) -> str:
    """'worse (×2.1, p=0.003)', 'no significant difference (p=0.41)', or — for the baseline itself."""
    if not v:
        return "—"
    ratio = f"×{v['ratio']:.2g}, " if v.get("ratio") is not None else ""
    p = v["p_holm"]
    text = "n.s." if v["verdict"] == "no significant difference" else f"**{v['verdict']}**"
    return f"{text} ({ratio}p={p:.2g})" if p == p else text


def to_markdown(board: dict[str, Any], skipped: list[dict[str, str]] | None = None) -> str:
    """One table per task; the teacher sampler's row at the bottom for reference."""
    lines = [f"# Leaderboard: suite `{board['suite']}`", ""]
    if board.get("smoke"):
        lines += ["> **Smoke test.** This suite checks that the benchmark pipeline runs, at a toy budget; its "
                  "order is noise and ranks nothing. The evidence is the `standard` suite.", ""]
    for task, t in board["tasks"].items():
        p, b = t["primary"], t["budget"]
        better = "higher" if t["higher_is_better"] else "lower"
        lines += [f"## {task}", "",
                  f"Ranked by **{p}** ({better} is better). Δ vs `{BASELINE}` is the relative change of the mean "
                  f"{p} (negative = lower). Budget per cell: {b['steps']} steps, batch {b['batch_size']}, "
                  f"{b['fake_updates']} fake updates/step, lr {b['lr_generator']}, backbone `{b['backbone']}`, "
                  f"schedule `{b['schedule']}`; metrics on {b['eval_samples']} samples.", ""]
        head = ["rank", "divergence", *t["metrics"], f"95% CI of {p}", f"Δ{p} vs {BASELINE}",
                f"vs {BASELINE} (paired, Holm)", "seeds", "wall s/run", "plugin"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in t["rows"]:
            name = f"**{r['name']}**" if r["divergence"] == BASELINE else r["name"]
            fail = f" ({r['failed_runs']} runs failed)" if r["failed_runs"] else ""
            lines.append("| " + " | ".join([
                rank_text(r["rank"]), name + fail, *(_cell(r["metrics"][m]) for m in t["metrics"]), _ci(r.get("ci")),
                _pct(r["delta_vs_baseline_pct"].get(p)), _verdict(r.get("vs_baseline")), str(len(r["seeds"])),
                f"{r['seconds']:.1f}", f"{r['dist']} {r['version']}"]) + " |")
        for ref, label in ((t["teacher"], f"*teacher sampler* ({t['teacher']['sampler']}, {t['teacher']['steps']} steps)"),
                           (t.get("floor"), "*exact samples (noise floor)*")):
            if ref is None:
                continue
            n = ref["metrics"][p]["n"] if p in ref["metrics"] else 0
            # Evaluated by the cells that finished: when none did, there is nothing to show (not a failure of its own).
            cells = [_cell(ref["metrics"][m]) if ref["metrics"][m]["n"] else "—" for m in t["metrics"]]
            lines.append("| " + " | ".join(["—", label, *cells, "—", "—", "—", str(n), "—", "—"]) + " |")
        lines += _tradeoff_lines(t)
        errors = sorted({e for r in t["rows"] for e in r["errors"]})
        if errors:
            lines += ["", "Failures: " + "; ".join(f"`{e}`" for e in errors)]
        lines.append("")
    lines += _summary_lines(board)
    for s in skipped or []:
        lines += [f"Skipped group `{s['group']}`: {s['note']}", ""]
    return "\n".join(lines)


def _summary_lines(board: dict[str, Any]) -> list[str]:
    """Across tasks: each row's rank and verdict against reverse-kl per task, then its counts."""
    summ = board.get("summary") or {}
    if len(summ.get("tasks", [])) < 2:
        return []
    mark = {"better": "better", "worse": "worse", "no significant difference": "n.s.", None: "—"}
    lines = ["## Summary across tasks", "",
             f"Rank on each task, and the paired test against `{BASELINE}` on the same seeds (Holm-corrected "
             "within the task; ×r is the geometric mean ratio of the primary metric). \"n.s.\" means no "
             "significant difference at 5%.", ""]
    head = ["divergence", *summ["tasks"], "better / n.s. / worse", "mean position (0 first, 1 last)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in summ["rows"].items():
        cells = []
        for task in summ["tasks"]:
            x = e["tasks"].get(task)
            if x is None:
                cells.append("—")
                continue
            ratio = f" ×{x['ratio']:.2g}" if x.get("ratio") is not None else ""
            where = "failed" if x["rank"] is None else f"#{x['rank']}/{x['of']}"
            cells.append(f"{where} {mark.get(x['verdict'], x['verdict'])}{ratio}")
        position = "—" if e.get("mean_position") is None else f"{e['mean_position']:.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {e['better']} / {e['same']} / {e['worse']} | "
                     f"{position}{' (failed on ' + str(e['failed_tasks']) + ')' if e.get('failed_tasks') else ''} |")
    return lines + [""]


def tradeoffs(task: dict[str, Any], against: str = "modes_covered", margin: float = 1.0) -> list[dict[str, Any]]:
    """Rows that rank above another row by the primary metric while covering at least ``margin`` fewer
    modes than it (means over seeds; a fraction of a mode is seed noise, not a trade).

    A low MMD² can come from a student that drops light modes and places the rest well (reverse-KL
    on gmm25), so the rank alone hides what it trades. For each such row: the best-covering row
    ranked below it, with both means of ``against``.
    """
    def mean(row: dict[str, Any]) -> float | None:
        return (row["metrics"].get(against) or {}).get("mean")

    out = []
    rows = [r for r in task["rows"] if mean(r) is not None and r["rank"] is not None]
    for i, row in enumerate(rows):
        below = max(rows[i + 1:], key=mean, default=None)
        if below is not None and mean(below) >= mean(row) + margin:
            out.append({"row": row["name"], "rank": row["rank"], "value": mean(row),
                        "other": below["name"], "other_rank": below["rank"], "other_value": mean(below)})
    return out


def _tradeoff_lines(task: dict[str, Any]) -> list[str]:
    """The markdown note for ``tradeoffs``: the rank and what it costs in covered modes."""
    found = tradeoffs(task)
    if not found:
        return []
    teacher = (task["teacher"]["metrics"].get("modes_covered") or {}).get("mean")
    of = f" (teacher sampler: {teacher:.3g})" if teacher is not None else ""
    parts = [f"#{f['rank']} {f['row']} covers {f['value']:.3g} modes, #{f['other_rank']} {f['other']} "
             f"{f['other_value']:.3g}" for f in found[:3]]
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return ["", f"Trade-off: the {task['primary']} rank does not order mode coverage{of}: " + "; ".join(parts)
            + more + ". Read the modes_covered column beside the rank."]


def to_csv(board: dict[str, Any]) -> str:
    """Long format: task, divergence, estimator, rank, metric, mean, std, n, delta %, seconds, dist, version."""
    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["task", "row", "divergence", "estimator", "rank", "metric", "mean", "std", "n", "failed",
                "delta_vs_reverse_kl_pct", "seconds", "dist", "version"])
    for task, t in board["tasks"].items():
        for r in t["rows"]:
            for m in t["metrics"]:
                s = r["metrics"][m]
                w.writerow([task, r["name"], r["divergence"], r["estimator"], r["rank"], m, s["mean"], s["std"], s["n"],
                            s["failed"], r["delta_vs_baseline_pct"].get(m), r["seconds"], r["dist"], r["version"]])
        for m in t["metrics"]:
            s = t["teacher"]["metrics"][m]
            w.writerow([task, TEACHER, "", "", "", m, s["mean"], s["std"], s["n"], s["failed"], "", "", "", ""])
    return buf.getvalue()
