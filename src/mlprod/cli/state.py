"""What the root command's options set for every subcommand, how they open the workspace, and the
consoles they print to.

``out`` and ``err`` (Rich consoles) are made on first use (PEP 562): ``mlprod --version`` and
``--help`` never import Rich.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import sqlite3

    from rich.console import Console

    from mlprod.progress import Step
    from mlprod.workspace import Workspace


@dataclass
class CliState:
    debug: bool = False
    workspace: Path | None = None


state = CliState()
if TYPE_CHECKING:
    out: Console
    err: Console


def __getattr__(name: str) -> Any:
    """``out`` (stdout) and ``err`` (stderr), each one Rich console made on first use."""
    if name not in ("out", "err"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    console = Console(stderr=name == "err", soft_wrap=True)
    globals()[name] = console
    return console


def open_workspace() -> Workspace:
    """The workspace named by ``--workspace``, else by ``MLPROD_HOME``, else found upward."""
    from mlprod.workspace import Workspace

    if state.workspace is not None:
        return Workspace.open(state.workspace)
    return Workspace.find(environ=os.environ)


T = TypeVar("T")


def read_fast(query: Callable[[sqlite3.Connection], T | None]) -> T | None:
    """``query``'s answer from the workspace's SQLite database, opened read-only without SQLAlchemy;
    None when the full workspace must answer instead (``mlprod.meta.fast_read`` says when).

    The config is checked without pydantic when it certainly validates (``mlprod.config_check``), else
    read as ``open_workspace`` would (same errors); only its database and artifact paths are used.
    """
    from mlprod.config_check import CONFIG_FILENAME, plain_paths
    from mlprod.meta.fast_read import open_read_only
    from mlprod.workspace import SQLITE_FILENAME, locate, resolve_in

    root = (
        state.workspace.expanduser().resolve() if state.workspace is not None else locate(environ=os.environ)
    )
    if root is None or not (root / CONFIG_FILENAME).is_file():
        return None
    paths = plain_paths(root / CONFIG_FILENAME, os.environ)
    if paths is None:
        from mlprod.config import load_config

        config = load_config(root / CONFIG_FILENAME, os.environ)  # its errors, as open_workspace's
        paths = (config.database.url, config.artifacts.path)
    database_url, artifacts = paths
    if database_url:
        return None
    with open_read_only(root / SQLITE_FILENAME, resolve_in(root, artifacts)) as connection:
        return None if connection is None else query(connection)


@contextmanager
def status(title: str) -> Iterator[Step]:
    """A ``Step`` that shows ``title: <step>`` as a live status line on stderr when it is a terminal.

    Piped or redirected, it shows nothing: progress is for people watching, not for logs or parsers.
    """
    console: Console = __getattr__("err")  # inside the module, the name alone would not reach the hook
    if not console.is_terminal:
        yield lambda _what: None
        return
    with console.status(title) as shown:
        yield lambda what: shown.update(f"{title}: {what}")


__all__ = ["CliState", "err", "open_workspace", "out", "read_fast", "state", "status"]
