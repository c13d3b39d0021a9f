"""``bregzoo convert edm-pkl``: an NVlabs/edm network pickle -> a safetensors teacher directory.

Added by the ``edm`` plugin's ``register_commands`` hook, under a ``convert`` group that it creates unless a
plugin loaded earlier did (typer is imported only then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

CONVERT_HELP = "Convert third-party checkpoints into bregzoo teacher directories (safetensors; nothing to unpickle later)."


def convert_group(app: typer.Typer) -> typer.Typer:
    """The app's ``convert`` sub-app, created on first use."""
    for group in app.registered_groups:
        if group.name == "convert" and group.typer_instance is not None:
            return group.typer_instance
    sub = typer.Typer(help=CONVERT_HELP, no_args_is_help=True)
    app.add_typer(sub, name="convert")
    return sub


def edm_pkl(
    file: Annotated[Path, typer.Argument(help="The network pickle, e.g. edm-cifar10-32x32-uncond-vp.pkl (downloaded beforehand).")],
    out: Annotated[Path, typer.Option(help="Teacher directory to write (replaced if it is an earlier conversion).")],
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Read the pickle. Unpickling can run code, so give this only for a file from a source you trust.")] = False,
    dataset: Annotated[Optional[str], typer.Option(help="The task the network was trained on, adopted by 'train --teacher DIR' (default: cifar10 for a 3x32x32 network, else none).")] = None,
    key: Annotated[str, typer.Option(help="The pickle's entry holding the network.")] = "ema",
) -> None:
    """Convert an NVlabs/edm network pickle into a teacher directory that 'bregzoo train --teacher DIR' reads.

    The pickle is read only with --trust-pickle, by a reader that resolves tensors and nothing else: the
    network source embedded in the file is never run. The directory holds the weights as safetensors and
    the architecture as JSON; using it never unpickles anything.
    """
    from bregzoo_zoo.edm import convert_edm_pickle

    cfg = convert_edm_pickle(file, out, trust_pickle=trust_pickle, dataset=dataset, key=key)
    net = cfg["network"]
    shape = "x".join(map(str, cfg["data_shape"]))
    typer.echo(f"{net['precond']}/{net['model_type']} ({cfg['parameters']:,} parameters, {shape}) -> {out}")
    typer.echo(f"next: bregzoo train --teacher {out} --backbone edm"
               + (f" --data DIR  (the {cfg['dataset']} folder)" if cfg["dataset"] else " --task TASK"))


def add_to(app: Any) -> None:
    """Register ``convert edm-pkl`` on ``app``."""
    convert_group(app).command("edm-pkl")(edm_pkl)
