"""``bregzoo bench``: suites of identical-budget cells, a resumable parallel runner, the leaderboard.

Example:
    >>> from bregzoo.bench import load_suite, run_suite, write_outputs    # doctest: +SKIP
    >>> suite = load_suite("quick")                                       # doctest: +SKIP
    >>> write_outputs(suite, run_suite(suite, "bench-out", workers=2), "bench-out")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bregzoo import io
from bregzoo.bench.compare import compare, load_board, to_text
from bregzoo.bench.leaderboard import build, to_csv, to_markdown
from bregzoo.bench.runner import SuiteRun, run_suite
from bregzoo.bench.suite import Cell, Group, Suite, expand, load_suite, parse_suite


def write_outputs(suite: Suite, run: SuiteRun, out: str | Path) -> dict[str, Any]:
    """Write leaderboard.{json,csv,md,png} under ``out`` (and leaderboard-curves.png when the cells were
    evaluated during training) and return the leaderboard dict."""
    from bregzoo.bench.plots import save_curves_png, save_png

    out = Path(out)
    board = build(suite, run.results)
    board["skipped"] = run.skipped
    io.write_json(out / "leaderboard.json", board)
    io.write_text(out / "leaderboard.csv", to_csv(board))
    io.write_text(out / "leaderboard.md", to_markdown(board, run.skipped))
    if board["tasks"]:
        save_png(out / "leaderboard.png", board, run.results)
        save_curves_png(out / "leaderboard-curves.png", board, run.results)
    return board


__all__ = ["Cell", "Group", "Suite", "SuiteRun", "compare", "expand", "load_board", "load_suite", "parse_suite",
           "run_suite", "to_text", "write_outputs"]
