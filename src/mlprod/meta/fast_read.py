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


# -- versioned tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefRow:
    """A branch or tag: ``mlprod.data.Ref``'s fields."""

    name: str
    kind: str
    commit_id: str
    updated_at: datetime


@dataclass(frozen=True)
class TableRow:
    """A table with what ``mlprod data list`` shows of it: its key, its refs and its main head."""

    name: str
    key: tuple[str, ...]
    has_expectations: bool
    refs: list[RefRow]
    head_id: str
    head_rows: int


@dataclass(frozen=True)
class CommitRow:
    """One commit: ``mlprod.data.CommitInfo``'s fields."""

    id: str
    table: str
    parents: tuple[str, ...]
    operation: str
    message: str
    author: str
    created_at: datetime
    num_rows: int
    changes: dict[str, int]


def table_refs(connection: sqlite3.Connection, table: str) -> list[RefRow] | None:
    """The branches and tags of ``table``, by name; None for an unknown table."""
    if connection.execute("SELECT 1 FROM data_tables WHERE name = ?", (table,)).fetchone() is None:
        return None
    rows = connection.execute(
        "SELECT name, kind, commit_id, updated_at FROM data_refs WHERE table_name = ? ORDER BY name", (table,)
    )
    return [RefRow(name, kind, commit, _utc(at)) for name, kind, commit, at in rows]


def tables(connection: sqlite3.Connection, branch: str = "main") -> list[TableRow] | None:
    """Every table, by name, with its refs and the head of ``branch``; None when one lacks the branch."""
    found = []
    for name, key, expectations in connection.execute(
        "SELECT name, key, expectations FROM data_tables ORDER BY name"
    ).fetchall():
        refs = table_refs(connection, name) or []
        head = next((r.commit_id for r in refs if r.name == branch), None)
        if head is None:
            return None
        row = connection.execute("SELECT num_rows FROM data_commits WHERE id = ?", (head,)).fetchone()
        if row is None:
            return None
        found.append(TableRow(name, tuple(json.loads(key)), bool(_json(expectations)), refs, head, row[0]))
    return found


def table_log(
    connection: sqlite3.Connection, table: str, ref: str, limit: int | None = None
) -> list[CommitRow] | None:
    """Commits reachable from the branch or tag ``ref`` along first parents, newest first; None when
    ``ref`` is no branch or tag of ``table`` (a commit id, an unknown name: the full path answers)."""
    head = connection.execute(
        "SELECT commit_id FROM data_refs WHERE table_name = ? AND name = ?", (table, ref)
    ).fetchone()
    if head is None:
        return None
    rows = connection.execute(
        "SELECT id, table_name, parents, operation, message, author, created_at, num_rows, changes "
        "FROM data_commits WHERE table_name = ?",
        (table,),
    )
    commits = {
        id_: CommitRow(
            id_, name, tuple(json.loads(parents)), op, message, who, _utc(at), n, dict(json.loads(changes))
        )
        for id_, name, parents, op, message, who, at, n, changes in rows
    }
    found: list[CommitRow] = []
    current: str | None = head[0]
    while current is not None and (limit is None or len(found) < limit):
        commit = commits[current]
        found.append(commit)
        current = commit.parents[0] if commit.parents else None
    return found


# -- serving ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteChangeRow:
    """One change of a routing plan: ``mlprod.serve.RouteChange``'s fields."""

    model: str
    revision: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime
    who: str
    why: str


def route_changes(connection: sqlite3.Connection, model: str) -> list[RouteChangeRow]:
    """Every change of ``model``'s routing plan, oldest first."""
    rows = connection.execute(
        "SELECT model, revision, before, after, at, who, why FROM serving_route_changes "
        "WHERE model = ? ORDER BY id",
        (model,),
    )
    return [
        RouteChangeRow(name, revision, _json(before), _json(after), _utc(at), who, why)
        for name, revision, before, after, at, who, why in rows
    ]


__all__ = [
    "AliasMoveRow",
    "CommitRow",
    "ModelRow",
    "RefRow",
    "RouteChangeRow",
    "TableRow",
    "alias_moves",
    "model_summaries",
    "open_read_only",
    "route_changes",
    "table_log",
    "table_refs",
    "tables",
    "utc",
]
