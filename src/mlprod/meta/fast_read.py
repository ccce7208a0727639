"""Read-only metadata queries through the stdlib ``sqlite3`` module, for read commands on SQLite.

Importing SQLAlchemy costs more than ``mlprod models list`` itself (about 0.3 s of a quiet machine's
start-up), so listing commands on a SQLite workspace open the database read-only
(``file:…?mode=ro``) with ``sqlite3`` and run one plain query. This path serves the ordinary case
only: ``open_read_only`` answers None for anything else — a missing file, a schema not at the newest
migration, a database and artifact store whose workspace ids are absent or differ — and so does a
query that would have to report an error (an unknown model). The caller then opens the full
``Workspace``, which refuses, upgrades, adopts or reports exactly as it always has. PostgreSQL
workspaces always take that path.

Each query returns typed rows with the same fields and values (timestamps aware, in UTC) as the
SQLAlchemy queries of the owning package, so a command prints the same either way.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlprod.meta.revision import head_revision

MARKER_FILENAME = "mlprod-workspace-id"  # mlprod.meta.workspace_id.MARKER_FILENAME (a test checks)
_ID = re.compile(r"^[0-9a-f]{32}$")
BUSY_TIMEOUT_S = 30.0


@contextmanager
def open_read_only(database: Path, artifacts: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection to the SQLite file ``database`` of the workspace whose artifact store is
    ``artifacts``; None when the full ``Workspace`` must open it (see the module docstring)."""
    connection = _connect(database, artifacts)
    try:
        yield connection
    finally:
        if connection is not None:
            connection.close()


def _connect(database: Path, artifacts: Path) -> sqlite3.Connection | None:
    if not database.is_file():
        return None
    uri = f"file:{quote(str(database.resolve()))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return None
    try:
        if _is_ours(connection, artifacts):
            return connection
    except sqlite3.Error:
        pass
    connection.close()
    return None


def _is_ours(connection: sqlite3.Connection, artifacts: Path) -> bool:
    """The schema is at the newest migration and the database carries the artifact store's id."""
    revisions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    if revisions != [(head_revision(),)]:
        return False
    stored = connection.execute("SELECT workspace_id FROM workspace_identity WHERE id = 1").fetchone()
    try:
        marked = (artifacts / MARKER_FILENAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return stored is not None and _ID.match(marked) is not None and stored[0] == marked


def utc(value: str | None) -> datetime | None:
    """A timestamp as SQLAlchemy's ``UTCDateTime`` reads it back from SQLite: aware, in UTC."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _utc(value: str) -> datetime:
    parsed = utc(value)
    assert parsed is not None
    return parsed


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


# -- models -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    """One registered model: ``mlprod.models.ModelSummary``'s fields."""

    name: str
    latest_version: int
    num_versions: int
    aliases: dict[str, int]


def model_summaries(connection: sqlite3.Connection) -> list[ModelRow]:
    """Every registered model, by name, with its latest version, version count and aliases."""
    aliases: dict[str, dict[str, int]] = {}
    for model, alias, version in connection.execute("SELECT model, alias, version FROM model_aliases"):
        aliases.setdefault(model, {})[alias] = version
    counts = connection.execute(
        "SELECT model, max(version), count(*) FROM model_versions GROUP BY model ORDER BY model"
    )
    return [ModelRow(model, latest, n, aliases.get(model, {})) for model, latest, n in counts]


@dataclass(frozen=True)
class AliasMoveRow:
    """One alias move: ``mlprod.models.AliasMove``'s fields."""

    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: datetime
    who: str
    why: str
    action: str


def alias_moves(connection: sqlite3.Connection, model: str) -> list[AliasMoveRow] | None:
    """Every alias move of ``model``, oldest first; None for a model never registered."""
    if connection.execute("SELECT 1 FROM registered_models WHERE name = ?", (model,)).fetchone() is None:
        return None
    rows = connection.execute(
        "SELECT model, alias, from_version, to_version, at, who, why, action FROM alias_history "
        "WHERE model = ? ORDER BY id",
        (model,),
    )
    return [
        AliasMoveRow(name, alias, old, new, _utc(at), who, why, action)
        for name, alias, old, new, at, who, why, action in rows
    ]


__all__ = [
    "AliasMoveRow",
    "ModelRow",
    "alias_moves",
    "model_summaries",
    "open_read_only",
    "utc",
]
