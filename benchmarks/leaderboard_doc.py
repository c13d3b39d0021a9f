"""Print docs/leaderboard.md from a bench output directory.

Usage: ``python benchmarks/leaderboard_doc.py benchmarks/results/standard > docs/leaderboard.md``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bregzoo.bench.leaderboard import BASELINE


def summary(board: dict) -> list[str]:
    """Top three ranked rows per task, with the delta of the primary metric vs reverse-kl and, where the
    leaderboard has them, the verdict of the paired test (unranked, failed rows never appear)."""
    lines = ["| task | primary | #1 | #2 | #3 | rank of reverse-kl |", "|---|---|---|---|---|---|"]
    for task, t in board["tasks"].items():
        p = t["primary"]
        ranked = [r for r in t["rows"] if r.get("rank") is not None]
        top = []
        for r in ranked[:3]:
            m, d = r["metrics"][p]["mean"], r["delta_vs_baseline_pct"].get(p)
            v = (r.get("vs_baseline") or {}).get("verdict")
            verdict = "" if v is None else ", n.s." if v == "no significant difference" else f", {v}"
            top.append(f"{r['name']} ({m:.3g}, {'—' if d is None else f'{d:+.1f}%'}{verdict})")
        top += ["—"] * (3 - len(top))
        base = next((r["rank"] for r in ranked if r["divergence"] == BASELINE), None)
        lines.append(f"| {task} | {p} | " + " | ".join(top) + f" | {base or 'unranked'} of {len(ranked)} |")
    return lines


def main(results: Path) -> None:
    board = json.loads((results / "leaderboard.json").read_text(encoding="utf-8"))
    readme = (results / "README.md").read_text(encoding="utf-8") if (results / "README.md").exists() else ""
    tables = (results / "leaderboard.md").read_text(encoding="utf-8").split("\n", 1)[1]
    rel = Path("..") / results
    out = ["# Leaderboard", "",
           "Each divergence of the suite distilled from the same teacher with the same budget and seeds, by "
           f"`bregzoo bench --suite {board['suite']}`. Numbers are mean ± std over seeds; Δ is the relative change of "
           f"the task's primary metric vs `{BASELINE}` (the DMD / Diff-Instruct baseline), negative = lower = better "
           "for mmd2. The teacher row is the 40-step Heun sampler the students are distilled from."
           + (" Each row's verdict against reverse-kl is a paired t-test on the same seeds (on the log of a positive "
              "metric), Holm-corrected across the task's divergences: better or worse only when it is significant "
              "at 5%, otherwise n.s.; the exact-sample row is the metric's noise floor."
              if "summary" in board else ""), "",
           "## Top three per task", "", *summary(board), "",
           f"![leaderboard]({rel / 'leaderboard.png'})", "",
           "## How it was produced, and findings", "", readme.split("\n", 1)[1].strip().replace("\n## ", "\n### ") if readme else "", "",
           "## Full tables", tables.replace("\n## ", "\n### ")]
    perf = results.parent / "perf.txt"
    if perf.exists():  # benchmarks/perf.py's output, committed next to the suite's results
        out += ["", "## Performance (`benchmarks/perf.py`)", "", "```", perf.read_text(encoding="utf-8").strip(), "```"]
    print("\n".join(out))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/standard"))
