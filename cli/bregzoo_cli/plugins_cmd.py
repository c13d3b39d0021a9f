"""``bregzoo plugins``: which plugins are installed, their versions and what they provide."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List installed plugins with their distribution, version, hooks and the names they provide."""
    from bregzoo.plugins import get_host

    infos = sorted(get_host().infos.values(), key=lambda i: i.name)
    if as_json:
        typer.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    table = Table(title="bregzoo plugins")
    for col in ("plugin", "distribution", "version", "hooks", "provides"):
        table.add_column(col)
    for info in infos:
        provides = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.provides.items())
        table.add_row(
            info.name, info.dist, info.version, ", ".join(info.hooks),
            f"[red]failed: {info.error}[/red]" if info.error else provides,
        )
    Console(width=160).print(table)
