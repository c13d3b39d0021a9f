"""What changed between two leaderboards (``bregzoo bench --compare A.json B.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bregzoo.errors import BregzooError


def load_board(path: str | Path) -> dict[str, Any]:
    """Read a leaderboard.json written by ``bregzoo bench``."""
    try:
        board = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BregzooError(f"leaderboard file {path} does not exist") from None
    except ValueError as exc:
        raise BregzooError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(board, dict) or "bregzoo_leaderboard" not in board:
        raise BregzooError(f"{path} is not a bregzoo leaderboard.json (written by 'bregzoo bench --out DIR')")
    return board


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Per task: rows added/removed, rank moves, and the primary metric's change A -> B (in %)."""
    out: dict[str, Any] = {"tasks_added": sorted(set(b["tasks"]) - set(a["tasks"])),
                           "tasks_removed": sorted(set(a["tasks"]) - set(b["tasks"])), "tasks": {}}
    for task in sorted(set(a["tasks"]) & set(b["tasks"])):
        ta, tb = a["tasks"][task], b["tasks"][task]
        p = tb["primary"]
        ra, rb = {r["name"]: r for r in ta["rows"]}, {r["name"]: r for r in tb["rows"]}
        changes = []
        for name in sorted(set(ra) & set(rb), key=lambda n: (rb[n]["rank"] is None, rb[n]["rank"] or 0, n)):
            ma = ra[name]["metrics"].get(p, {}).get("mean")
            mb = rb[name]["metrics"].get(p, {}).get("mean")
            pct = 100.0 * (mb - ma) / abs(ma) if ma not in (None, 0) and mb is not None else None
            changes.append({"name": name, "rank_a": ra[name]["rank"], "rank_b": rb[name]["rank"],
                            "a": ma, "b": mb, "change_pct": pct})
        out["tasks"][task] = {"primary": p, "primary_changed": ta["primary"] != p,
                              "added": sorted(set(rb) - set(ra)), "removed": sorted(set(ra) - set(rb)),
                              "rows": changes}
    return out


def to_text(diff: dict[str, Any]) -> str:
    """A plain-text report of ``compare``'s result."""
    lines = []
    for key, label in (("tasks_added", "tasks only in B"), ("tasks_removed", "tasks only in A")):
        if diff[key]:
            lines.append(f"{label}: {', '.join(diff[key])}")
    for task, t in diff["tasks"].items():
        lines.append(f"{task} (by {t['primary']}{', primary metric changed' if t['primary_changed'] else ''}):")
        for key, label in (("added", "only in B"), ("removed", "only in A")):
            if t[key]:
                lines.append(f"  {label}: {', '.join(t[key])}")
        for r in t["rows"]:
            if None in (r["rank_a"], r["rank_b"]):  # a failed row is not ranked
                arrow = "same" if r["rank_a"] == r["rank_b"] else ("failed in B" if r["rank_b"] is None else "failed in A")
            else:
                move = r["rank_a"] - r["rank_b"]
                arrow = f"up {move}" if move > 0 else (f"down {-move}" if move < 0 else "same")
            fa = "—" if r["a"] is None else f"{r['a']:.4g}"
            fb = "—" if r["b"] is None else f"{r['b']:.4g}"
            pct = "" if r["change_pct"] is None else f" ({r['change_pct']:+.1f}%)"
            ra, rb = (("failed" if x is None else x) for x in (r["rank_a"], r["rank_b"]))
            lines.append(f"  {r['name']}: rank {ra} -> {rb} ({arrow}); {fa} -> {fb}{pct}")
    return "\n".join(lines) + "\n"
