"""``bregzoo divergences``: the zoo of Bregman generators, their h and weight formulas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table


def divergences(
    pattern: Annotated[str, typer.Argument(help="fnmatch pattern, e.g. '*kl*'.")] = "*",
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG of omega(r) over log r in [-5, 5].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List divergences with h(r) and the generator weight omega(r) = r h''(r), r = student/teacher."""
    from bregzoo import BregzooError, create_divergence, list_divergences
    from bregzoo.plugins import get_host

    names = list_divergences(pattern)
    if not list_divergences():
        raise BregzooError(
            "no divergences are registered: the built-in zoo (distribution 'bregzoo') and every other "
            "plugin are missing or blocked; check BREGZOO_DISABLE_PLUGINS and 'bregzoo plugins'"
        )
    if not names:
        raise BregzooError(f"no divergence matches {pattern!r}; run 'bregzoo divergences' to see them all")
    rows = []
    for name in names:
        try:
            div = create_divergence(name)
        except BregzooError as exc:  # one plugin's broken factory must not hide the rest of the zoo
            typer.echo(f"bregzoo: warning: divergence {name!r} skipped: {' '.join(str(exc).split())}", err=True)
            continue
        provider = get_host().provider_of("divergence", name)
        rows.append({
            "name": name, "h": div.h_formula or "(h only)", "omega": div.weight_formula or "(autograd)",
            "params": div.params(), "summary": div.summary, "provider": provider.dist if provider else "?",
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title=f"{len(rows)} divergences (r = q_student / p_teacher)")
        table.add_column("name", no_wrap=True)  # a name is what a user copies: never split it
        for col in ("h(r)", "omega(r) = r h''(r)", "params", "known as", "from"):
            table.add_column(col)
        for row in rows:
            params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
            table.add_row(row["name"], row["h"], row["omega"], params, row["summary"], row["provider"])
        Console().print(table)  # the terminal's width (rich wraps the long columns), or COLUMNS
    if plot is not None:
        _plot_weights(names, plot)
        typer.echo(f"wrote {plot}")


def _plot_weights(names: list[str], path: Path) -> None:
    import io

    import matplotlib

    from bregzoo import BregzooError
    from bregzoo import io as bregzoo_io

    if not path.parent.is_dir():
        raise BregzooError(f"--plot {path}: the folder {path.parent} does not exist; create it or pick another path")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from bregzoo import create_divergence

    ell = torch.linspace(-5, 5, 401, dtype=torch.float64)
    # Divergences with the same weight (reverse-kl and ukl, lsif and squared) draw one curve with one
    # label, instead of one hidden under the other.
    curves: list[tuple[list[str], torch.Tensor]] = []
    for name in names:
        w = create_divergence(name).log_weight(ell).exp()
        same = next((c for c in curves if torch.allclose(c[1], w, rtol=1e-9, atol=0)), None)
        if same is None:
            curves.append(([name], w))
        else:
            same[0].append(name)
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("tab10")
    for i, (group, w) in enumerate(curves):  # colour and line style together: never two curves alike
        ax.plot(ell.numpy(), w.numpy(), color=cmap(i % 10), ls=("-", "--", ":")[i // 10 % 3], lw=1.5,
                label=" = ".join(group))
    ax.set(xlabel="log r = log(q/p)", ylabel="omega(r) = r h''(r)", yscale="log",
           title="Di-Bregman generator weights")
    ax.axvline(0, color="grey", lw=0.5)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()  # rendered in memory, then written atomically: a crash never leaves half a PNG
    fig.savefig(buf, format="png", dpi=120)
    bregzoo_io.write_bytes(path, buf.getvalue())
    plt.close(fig)
