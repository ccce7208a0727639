"""The root ``mlprod`` command, its command groups, and the mapping of errors to exit codes.

A user error (``MlprodError``) prints one line and exits 2; an unexpected error prints one line and
exits 1; ``--debug`` (or ``MLPROD_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from mlprod import __version__
from mlprod.cli import (
    data_commands,
    demo_command,
    eval_commands,
    features_commands,
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

app = typer.Typer(
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
        typer.Option(
            "--workspace", "-C", help="Workspace directory (default: $MLPROD_HOME, else search upward)."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
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
app.add_typer(
    planned_group("The retraining loop: trigger, retrain, evaluate, canary, promote or roll back."),
    name="loop",
)
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
