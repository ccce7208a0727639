"""The root ``mlprod`` command, its command groups, and the mapping of errors to exit codes.

A user error (``MlprodError``) prints one line and exits 2; an unexpected error prints one line and
exits 1; ``--debug`` (or ``MLPROD_DEBUG=1``) prints the traceback as well. ``-C/--workspace`` and
``--debug`` work before the subcommand (``mlprod -C ws models list``) and after it
(``mlprod models list -C ws``), with the same meaning.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main
from rich.text import Text

from mlprod import __version__
from mlprod.cli import (
    data_commands,
    demo_command,
    eval_commands,
    features_commands,
    loop_commands,
    models_commands,
    monitor_commands,
    predict_commands,
    routes_commands,
    serve_commands,
    token_commands,
    workspace_commands,
)
from mlprod.cli.planned import planned_group
from mlprod.cli.state import err, state
from mlprod.errors import MlprodError

WORKSPACE_HELP = "Workspace directory (default: $MLPROD_HOME, else search upward)."
DEBUG_HELP = "Show tracebacks on errors."


class _RootGroup(typer.core.TyperGroup):
    """The root command; it gives every subcommand the root's ``-C/--workspace`` and ``--debug`` too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        shared = typer.main.get_command(_shared_options_app).params
        for command in _subcommands(self):
            command.params.extend(shared)


def _subcommands(group: typer.core.TyperGroup) -> Iterator[Any]:
    for command in group.commands.values():
        yield command
        if isinstance(command, typer.core.TyperGroup):
            yield from _subcommands(command)


def _set_workspace(value: Path | None) -> None:
    if value is not None:
        state.workspace = value


def _set_debug(value: bool) -> None:
    if value:
        state.debug = True


_shared_options_app = typer.Typer(add_completion=False)


@_shared_options_app.command()
def _shared_options(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-C",
            help=WORKSPACE_HELP,
            callback=_set_workspace,
            is_eager=True,
            expose_value=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help=DEBUG_HELP, callback=_set_debug, is_eager=True, expose_value=False)
    ] = False,
) -> None:
    """Only its options are used: typer builds them (eager, so ``--debug`` holds when other input is bad)."""


app = typer.Typer(
    cls=_RootGroup,
    name="mlprod",
    help="mlprod: versioned data, features, training, registry, evaluation, serving, monitoring "
    "and the retraining loop around your models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help renders literally: "[evaluate]" stays, flags show no "<bool>"
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlprod {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-C", help=WORKSPACE_HELP),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    state.workspace = workspace
    state.debug = debug or state.debug


workspace_commands.register(app)
app.add_typer(data_commands.app, name="data")
app.add_typer(features_commands.app, name="features")
app.add_typer(models_commands.app, name="models")
app.add_typer(eval_commands.app, name="eval")
serve_commands.register(app)
predict_commands.register(app)
app.add_typer(routes_commands.app, name="routes")
app.add_typer(token_commands.app, name="tokens")
app.add_typer(monitor_commands.app, name="monitor")
app.add_typer(loop_commands.app, name="loop")
app.add_typer(planned_group("Web dashboard."), name="ui")
demo_command.register(app)


def main() -> None:
    """Entry point of the ``mlprod`` script."""
    state.debug = os.environ.get("MLPROD_DEBUG", "") not in ("", "0")
    try:
        app()
    except MlprodError as exc:
        _fail(exc, f"error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        _fail(None, "interrupted", 130)
    except Exception as exc:  # a bug in mlprod: one line, traceback with --debug
        _fail(exc, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)


def _fail(exc: BaseException | None, line: str, code: int) -> None:
    if state.debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    err.print(Text(line, style="bold red"))
    sys.exit(code)
