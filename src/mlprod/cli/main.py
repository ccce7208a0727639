"""The root ``mlprod`` command, its command groups, and the mapping of errors to exit codes.

The command tree is lazy: a command's module is imported, and its click command built, only when
that command runs or its own help is shown (``COMMANDS``: name, loader, first paragraph of its help,
so the root's ``--help`` lists every command without importing any). ``mlprod --version`` and
``mlprod --help`` thus cost the interpreter, typer and this module, not every command's imports.

A user error (``MlprodError``) prints one line and exits 2; an unexpected error prints one line and
exits 1; ``--debug`` (or ``MLPROD_DEBUG=1``) prints the traceback as well. ``-C/--workspace`` and
``--debug`` work before the subcommand (``mlprod -C ws models list``) and after it
(``mlprod models list -C ws``), with the same meaning.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main
from typer import _click
from typer._click.utils import make_default_short_help

from mlprod import __version__
from mlprod.cli import state as cli_state
from mlprod.cli.state import state
from mlprod.errors import MlprodError

WORKSPACE_HELP = "Workspace directory (default: $MLPROD_HOME, else search upward)."
DEBUG_HELP = "Show tracebacks on errors."


Loader = Callable[[typer.Typer, str], None]


def _group(module: str) -> Loader:
    """A command group: the ``app`` (a ``typer.Typer``) of ``module``."""
    return lambda wrapper, name: wrapper.add_typer(importlib.import_module(module).app, name=name)


def _registered(module: str) -> Loader:
    """Top-level commands that ``module.register(app)`` adds."""
    return lambda wrapper, _name: importlib.import_module(module).register(wrapper)


def _planned(description: str) -> Loader:
    def load(wrapper: typer.Typer, name: str) -> None:
        from mlprod.cli.planned import planned_group

        wrapper.add_typer(planned_group(description), name=name)

    return load


UI_HELP = "Web dashboard."
# name, loader, first paragraph of the command's help (a test checks it against the loaded command)
COMMANDS: tuple[tuple[str, Loader, str], ...] = (
    ("init", _registered("mlprod.cli.workspace_commands"),
     "Create a workspace: mlprod.toml, the metadata database (migrated), the artifact store and the "
     "local admin token (for the server's admin API; a file only you can read)."),
    ("info", _registered("mlprod.cli.workspace_commands"),
     "Show where the current workspace keeps its data and what it holds."),
    ("serve", _registered("mlprod.cli.serve_commands"),
     "Serve registered models over HTTP until interrupted (Ctrl-C flushes the prediction log)."),
    ("predict", _registered("mlprod.cli.predict_commands"),
     "Score every row of a file and write its columns plus the prediction column to Parquet."),
    ("demo", _registered("mlprod.cli.demo_command"),
     'Ingest January-June 2013 flights, train four candidates (logistic regression, small and large '
     'LightGBM, XGBoost) as recorded runs, evaluate them on July, print the leaderboards under the '
     'accuracy-first and edge profiles, let the gate pick the champion, serve it over HTTP, predict '
     'July flights, log every prediction; then monitor the champion week by week over August-December '
     "(drift alarms, accuracy estimated without labels and realized) and write an HTML report."),
    ("data", _group("mlprod.cli.data_commands"),
     'Versioned tables: create, commit, log, show, checkout, branch, tag, diff, merge, expect, '
     "validate, skew, check, gc, fsck."),
    ("features", _group("mlprod.cli.features_commands"),
     'Feature store: list and show definitions, build point-in-time training frames, materialize to '
     "the online store, look up online."),
    ("models", _group("mlprod.cli.models_commands"),
     'Training runs and the model registry: train, runs, list, search, show, tag, alias, rollback, '
     "history, export."),
    ("eval", _group("mlprod.cli.eval_commands"),
     'Evaluation: reports (quality, slices, robustness, fairness, serving cost, interpretability), '
     "leaderboards ranked by a profile's utility, and the champion/challenger gate."),
    ("routes", _group("mlprod.cli.routes_commands"),
     "Routing plans for online serving: show, set, clear, history."),
    ("tokens", _group("mlprod.cli.token_commands"),
     'API tokens for the prediction server: create, list, revoke. Scopes: predict, read, admin (admin '
     "implies the other two)."),
    ("monitor", _group("mlprod.cli.monitor_commands"),
     "Monitoring of served models: references, drift, data quality, performance, alerts."),
    ("loop", _group("mlprod.cli.loop_commands"),
     "The retraining loop: trigger, retrain, evaluate, canary, promote or roll back (only `check` is "
     "available yet)."),
    ("ui", _planned(UI_HELP), f"(not available yet) {UI_HELP}"),
)  # fmt: skip


class _LazyCommands(MutableMapping[str, _click.Command]):
    """The root's subcommands by name, in ``COMMANDS`` order; each is built on first look-up."""

    def __init__(self, shared: list[_click.Parameter]) -> None:
        self.loaded: dict[str, _click.Command] = {}
        self.loaders = {name: loader for name, loader, _ in COMMANDS}
        self.shared = shared

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self.loaded:
            if name not in self.loaders:
                raise KeyError(name)
            self.loaded[name] = self._build(name)
        return self.loaded[name]

    def _build(self, name: str) -> _click.Command:
        """Build ``name`` as typer would inside the whole tree: same markup mode, shared options."""
        wrapper = typer.Typer(rich_markup_mode=None, add_completion=False)
        wrapper.callback()(_no_op)  # a callback keeps typer from collapsing a one-command app
        self.loaders[name](wrapper, name)
        built = typer.main.get_command(wrapper)
        assert isinstance(built, typer.core.TyperGroup)
        command = built.commands[name]
        for sub in _subcommands(command):
            sub.params.extend(self.shared)
        return command

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self.loaded.pop(name, None)
        del self.loaders[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.loaders
        yield from (name for name in self.loaded if name not in self.loaders)

    def __len__(self) -> int:
        return len(set(self.loaders) | set(self.loaded))


def _no_op() -> None:
    """The wrapper's callback; never runs."""


class _RootGroup(typer.core.TyperGroup):
    """The root command: subcommands load on demand, and each gets the root's ``-C/--workspace`` and
    ``--debug`` too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        shared = typer.main.get_command(_shared_options_app).params
        self.commands = _LazyCommands(shared)

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The commands and their short help, as typer writes them, from ``COMMANDS`` (no import)."""
        limit = formatter.width - 6 - max(len(name) for name, _, _ in COMMANDS)
        rows = [(name, make_default_short_help(summary, limit).strip()) for name, _, summary in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _subcommands(command: _click.Command) -> Iterator[_click.Command]:
    yield command
    if isinstance(command, typer.core.TyperGroup):
        for sub in command.commands.values():
            yield from _subcommands(sub)


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
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    from rich.text import Text

    cli_state.err.print(Text(line, style="bold red"))
    sys.exit(code)
