"""``bregzoo alpha-sweep``: the alpha family's weights over a grid of alpha, and which zoo member each equals.

Added to the ``bregzoo`` app through the ``register_commands`` hook; typer and rich are imported only
when the command is registered or run, so importing the plugin stays cheap. (No ``from __future__ import
annotations`` here: typer must evaluate the option annotations, whose names are imported locally.)
"""

import json
import math
from pathlib import Path
from typing import Any, Optional

import lazy_loader

from bregzoo import BregzooError, create_divergence, hookimpl, list_divergences

torch = lazy_loader.load("torch")  # on first use: registering the command must not wait for it


def _ell_grid():  # no annotation: this module's annotations are evaluated (see above), which would import torch
    """The log r grid on which two weights count as "the same up to a constant factor"."""
    return torch.linspace(-6.0, 6.0, 121, dtype=torch.float64)


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BregzooError(f"--{what} must be comma-separated numbers, e.g. '-1,0,1', got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise BregzooError(f"--{what} needs at least one finite number, got {text!r}")
    return values


def same_weight_as(alpha: float, tol: float = 1e-9) -> list[tuple[str, float]]:
    """Zoo divergences (at their default parameters) whose omega is c * omega_alpha; returns (name, c).

    A constant factor c only rescales the generator's gradient, so these train identically up to the
    learning rate. Compared numerically, on log omega over log r in [-6, 6].
    """
    ell = _ell_grid()
    mine = create_divergence("alpha", alpha=alpha).log_weight(ell)
    found = []
    for name in list_divergences():
        if name == "alpha":
            continue
        try:
            diff = create_divergence(name).log_weight(ell) - mine
        except BregzooError:  # a divergence without defaults for its parameters: nothing to compare
            continue
        if torch.isfinite(diff).all() and float(diff.max() - diff.min()) < tol:
            found.append((name, math.exp(float(diff.mean()))))
    return found


def sweep(alphas: list[float], ratios: list[float]) -> list[dict[str, Any]]:
    """One row per alpha: omega at each r, and the zoo members with the same weight up to a factor."""
    r = torch.tensor(ratios, dtype=torch.float64)
    rows = []
    for a in alphas:
        div = create_divergence("alpha", alpha=a)
        omega = div.log_weight(r.log()).exp()
        rows.append({
            "alpha": a,
            "omega": dict(zip(map(str, ratios), omega.tolist())),
            "same_weight_as": [{"name": n, "factor": c} for n, c in same_weight_as(a)],
        })
    return rows


def alpha_sweep(
    alphas: str = "-3,-1,0,1,2,3",
    ratios: str = "0.1,0.5,1,2,10",
    check: bool = False,
    as_json: bool = False,
    plot: Optional[Path] = None,
) -> None:
    """Amari alpha-divergences: omega(r) = r h''(r) over a grid of alpha, and the zoo member each equals."""
    import typer

    rs = _floats(ratios, "ratios")
    if min(rs) <= 0:
        raise BregzooError(f"--ratios must be positive (r = q/p is a density ratio), got {ratios!r}")
    rows = sweep(_floats(alphas, "alphas"), rs)
    failed = 0
    if check:
        failed = _run_claims(rows)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, check)
    if plot is not None:
        _plot(rows, plot)
        typer.echo(f"wrote {plot}")
    if failed:
        typer.echo(f"{failed} claim(s) failed", err=True)
        raise typer.Exit(1)


def _run_claims(rows: list[dict[str, Any]]) -> int:
    """Run bregzoo's quick claims for each alpha; store 'passed/total' in the row; return the failures."""
    try:
        from bregzoo.check import check_divergence_claims
    except ImportError as exc:
        raise BregzooError(f"--check needs bregzoo's claims (bregzoo.check), which failed to import: {exc}") from exc
    failed = 0
    for row in rows:
        results = check_divergence_claims(create_divergence("alpha", alpha=row["alpha"]), quick=True)
        bad = [c for c in results if not c.passed]
        row["claims"] = {"passed": len(results) - len(bad), "total": len(results),
                         "failed": [f"{c.claim}: {c.detail}" for c in bad]}
        failed += len(bad)
    return failed


def _print_table(rows: list[dict[str, Any]], check: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Amari alpha-divergences: omega(r) = r^((alpha-1)/2), r = q_student/p_teacher")
    table.add_column("alpha")
    for r in rows[0]["omega"]:
        table.add_column(f"omega(r={r})", justify="right")
    table.add_column("same weight as (x factor)")
    if check:
        table.add_column("claims")
    for row in rows:
        same = ", ".join(f"{s['name']} (x{s['factor']:.4g})" for s in row["same_weight_as"]) or "-"
        cells = [f"{row['alpha']:g}", *(f"{w:.4g}" for w in row["omega"].values()), same]
        if check:
            c = row["claims"]
            cells.append(f"{c['passed']}/{c['total']}" + ("" if not c["failed"] else " [red]FAIL[/red]"))
        table.add_row(*cells)
    Console(width=160).print(table)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ell = _ell_grid()
    for row in rows:
        div = create_divergence("alpha", alpha=row["alpha"])
        ax.plot(ell, div.log_weight(ell).exp(), label=f"alpha={row['alpha']:g}")
    ax.set(xlabel="log r = log(q/p)", ylabel="omega(r)", yscale="log", title="Amari alpha-divergence weights")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@hookimpl
def register_commands(app: Any) -> None:
    """Add ``bregzoo alpha-sweep``."""
    from typing import Annotated

    import typer

    def command(
        alphas: Annotated[str, typer.Option(help="Comma-separated alpha values.")] = "-3,-1,0,1,2,3",
        ratios: Annotated[str, typer.Option(help="Comma-separated ratios r = q/p at which to print omega.")] = "0.1,0.5,1,2,10",
        check: Annotated[bool, typer.Option("--check", help="Also run bregzoo's quick claims for each alpha.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
        plot: Annotated[Optional[Path], typer.Option(help="Write a PNG of omega(r) for each alpha.")] = None,
    ) -> None:
        alpha_sweep(alphas, ratios, check, as_json, plot)

    command.__doc__ = alpha_sweep.__doc__
    app.command("alpha-sweep")(command)
