"""``mlprod init`` and ``mlprod info``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlprod.cli.state import open_workspace, out


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("info")(info)


def init(
    path: Annotated[
        Path, typer.Argument(help="Directory to make a workspace (created if missing).")
    ] = Path(),
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Metadata database URL, e.g. postgresql+psycopg://user:pw@host/db (default: SQLite)."
        ),
    ] = None,
) -> None:
    """Create a workspace: mlprod.toml, the metadata database (migrated), the artifact store and the
    local admin token (for the server's admin API; a file only you can read).

    The only command that creates a metadata database: every other one refuses a missing, empty or
    foreign database (one whose workspace id differs from the artifact store's)."""
    from mlprod.serve.local_admin import ensure_local_admin
    from mlprod.workspace import Workspace

    with Workspace.init(path, database_url=database_url) as ws:
        admin_path, _created = ensure_local_admin(ws)
        out.print(f"Initialised mlprod workspace in {ws.root}")
        out.print(f"  workspace id:      {ws.workspace_id} (in the database and the artifact store)")
        out.print(f"  metadata database: {_hide_password(ws.database_url)}")
        out.print(f"  artifacts:         {ws.artifacts.root}")
        out.print(f"  local admin token: {admin_path} (mode 0600)")


def info() -> None:
    """Show where the current workspace keeps its data and what it holds."""
    from mlprod.data import TableStore
    from mlprod.models import Registry

    with open_workspace() as ws:
        fields = {
            "workspace": ws.root,
            "workspace id": ws.workspace_id,
            "metadata database": _hide_password(ws.database_url),
            "artifacts": ws.artifacts.root,
            "prediction log": ws.prediction_log_dir,
            "tables": len(TableStore(ws).tables()),
            "models": len(Registry(ws).models()),
        }
    for name, value in fields.items():  # one line each, never cut (a long path runs on)
        out.print(f"{name:<18} {value}", markup=False, highlight=False, soft_wrap=True)


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
