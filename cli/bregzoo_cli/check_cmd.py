"""``bregzoo check``: verify the unification claims numerically, one table row per claim and subject."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _num(x: float) -> float | str:
    """JSON has no inf or NaN: write them as strings."""
    return x if math.isfinite(x) else str(x)


def check(
    divergence: Annotated[str, typer.Option(
        "--divergence", "-d", help="Divergences to check: an fnmatch pattern ('*kl*') or one spec ('power:alpha=2')."
    )] = "*",
    claims: Annotated[str, typer.Option(
        "--claims", "-c", help="Claims to run: comma-separated fnmatch patterns, e.g. 'gradient-*,weight-*'."
    )] = "*",
    estimator: Annotated[Optional[str], typer.Option(
        "--estimator", "-e", help="Ratio estimators to check (pattern). Default: all, or none when --divergence is given."
    )] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Coarser grids, fewer samples: a few seconds.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="List the claims and exit.")] = False,
    dictionary: Annotated[bool, typer.Option(
        "--dictionary", help="Print the unification dictionary (markdown table of the named rows) and exit."
    )] = False,
) -> None:
    """Check every unification claim numerically (docs/unification.md); exit 1 if any fails, 2 on a usage error.

    Divergence claims run for every registered divergence, third-party plugins included.
    """
    from bregzoo.check import list_claims, run_checks

    if list_only:
        for name, text in list_claims().items():
            typer.echo(f"{name:20s} {text}")
        return
    if dictionary:
        from bregzoo.check.dictionary import dictionary_markdown

        typer.echo(dictionary_markdown(divergence), nl=False)
        return
    start = time.perf_counter()
    rows = run_checks(divergence, claims, quick=quick, estimators=estimator)
    seconds = time.perf_counter() - start
    n_failed = sum(not r.passed for r in rows)
    if as_json:
        out = {
            "passed": n_failed == 0, "failed": n_failed, "total": len(rows), "seconds": round(seconds, 3),
            "results": [{**asdict(r), "abs_err": _num(r.abs_err), "rel_err": _num(r.rel_err)} for r in rows],
        }
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print_table(rows, n_failed, seconds, quick)
    if n_failed:
        raise typer.Exit(1)


def _print_table(rows, n_failed: int, seconds: float, quick: bool) -> None:
    title = f"bregzoo check{' --quick' if quick else ''}: {len(rows) - n_failed}/{len(rows)} passed in {seconds:.2f} s"
    table = Table(title=title)
    for col, kw in (("claim", {}), ("subject", {}), ("quantity", {}), ("abs err", {"justify": "right"}),
                    ("rel err", {"justify": "right"}), ("tol", {"justify": "right"}), ("result", {})):
        table.add_column(col, **kw)
    for r in rows:
        result = "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        table.add_row(escape(r.claim), escape(r.subject) or "—", escape(r.quantity), f"{r.abs_err:.1e}", f"{r.rel_err:.1e}",
                      f"{r.tol:.0e}", result)
    console = Console(width=200)
    console.print(table)
    for r in rows:
        if not r.passed:
            console.print(f"[bold red]FAIL[/bold red] {escape(r.claim)} ({escape(r.subject)}): {escape(r.detail)}",
                          highlight=False)
