"""The typer app. Each command lives in its own module; plugins may add more via register_commands."""

from __future__ import annotations

import sys
import typing
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from bregzoo.errors import BregzooError

try:  # newer typer raises the errors of its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # older typer: click's; NoArgsIsHelpError (the help for no arguments) is click >= 8.2
    from click.exceptions import UsageError

    NoArgsIsHelpError = getattr(click.exceptions, "NoArgsIsHelpError", ())

_DEBUG = {"on": False}


class _OneLineErrors(TyperGroup):
    """Turn user errors into one line on stderr and exit code 2 (1 for a failed claim); ``--debug`` shows the traceback.

    Usage errors (a bad option value, an unknown option or command) are one line too, instead of
    typer's boxed usage text; ``--help`` and the help shown for no arguments are unchanged.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:  # the group's own options (bregzoo --bogus); a command's options are parsed in invoke
            return super().parse_args(ctx, args)
        except UsageError as exc:
            _usage_error(exc, ctx)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _usage_error(exc, ctx)
        except (BregzooError, OSError) as exc:
            if _DEBUG["on"]:
                raise
            typer.echo(f"error: {_one_line(exc)}", err=True)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None


def _usage_error(exc: UsageError, ctx: click.Context) -> typing.NoReturn:
    """Print a usage error as one line naming the --help to read, and exit 2 (click's code for it)."""
    if isinstance(exc, NoArgsIsHelpError) or _DEBUG["on"]:
        raise exc
    where = (exc.ctx or ctx).command_path
    text = " ".join(exc.format_message().split()).rstrip(".")  # "Invalid value for '--steps': ..."
    typer.echo(f"error: {text}; see '{where} --help'", err=True)
    raise typer.Exit(2) from None


def _one_line(exc: Exception) -> str:
    """The message on one line (a multi-line message from a library would look like a traceback)."""
    if isinstance(exc, OSError) and not isinstance(exc, BregzooError) and exc.filename is not None:
        text = f"cannot use '{exc.filename}': {exc.strerror}; check the path and its permissions, or choose another"
    else:
        text = str(exc)
    text = " ".join(text.split())  # also a path's own line breaks (\n, \x1e, \u2028, ...): str.split takes them all
    return text if len(text) <= 600 else text[:597] + "..."


app = typer.Typer(
    name="bregzoo",
    cls=_OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="One-step diffusion distillation by Bregman density-ratio matching (Di-Bregman).",
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    """One-step diffusion distillation by Bregman density-ratio matching (Di-Bregman)."""
    _DEBUG["on"] = debug


def _add_builtin_commands() -> None:
    from bregzoo_cli import check_cmd, divergences_cmd, plugins_cmd

    app.command("plugins")(plugins_cmd.plugins)
    app.command("divergences")(divergences_cmd.divergences)
    app.command("check")(check_cmd.check)
    from bregzoo_cli import sample_cmd, train_cmd

    app.command("train")(train_cmd.train)
    app.command("sample")(sample_cmd.sample)
    from bregzoo_cli import bench_cmd; app.command("bench")(bench_cmd.bench)  # noqa: E702
    from bregzoo_cli import teach_cmd; app.command("teach")(teach_cmd.teach)  # noqa: E702
    from bregzoo_cli import eval_cmd; app.command("eval")(eval_cmd.evaluate)  # noqa: E702


_add_builtin_commands()
_PLUGIN_COMMANDS = {"added": False}


def _builtin_help(argv: list[str]) -> bool:
    """Whether ``argv`` asks only for a built-in command's help (``bregzoo train --help``).

    That help does not depend on the commands that plugins add, so the plugins are not loaded for it
    (the built-in ones register without torch, but a third-party one may import it).
    """
    return len(argv) >= 2 and argv[0] in _BUILTIN and "--help" in argv[1:]


_BUILTIN = frozenset(c.name for c in app.registered_commands)


def get_app(argv: list[str] | None = None) -> typer.Typer:
    """The app with the commands that installed plugins add (loaded once; not for a built-in's --help)."""
    if argv is not None and _builtin_help(argv):
        return app
    if not _PLUGIN_COMMANDS["added"]:
        from bregzoo.plugins import get_host

        get_host().add_commands(app)
        _PLUGIN_COMMANDS["added"] = True
    return app


def main() -> None:
    """Console-script entry point."""
    _DEBUG["on"] = "--debug" in sys.argv
    try:
        get_app(sys.argv[1:])()
    except BregzooError as exc:  # raised while loading plugins, before any command runs
        if _DEBUG["on"]:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
