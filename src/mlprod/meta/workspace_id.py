"""Which metadata database belongs to which artifact store: the workspace id.

``mlprod init`` draws a random id and writes it twice: into the metadata database (table
``workspace_identity``) and into a marker file at the root of the artifact store. Opening a workspace
compares the two, so a config pointing to another database (another SQLite file, another PostgreSQL
database, a database recreated empty) is refused before anything reads it — and before ``data gc``
could take every object the right database knows for garbage.

Workspaces created before ids existed are adopted on their first open, but only with a database that
knows some of the objects their store holds (or a store that holds none): an empty or unrelated
database never is.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlprod.errors import DatabaseError, ForeignDatabaseError, MissingDatabaseError, StorageFullError
from mlprod.meta.tables import data_commits, model_versions, workspace_identity

MARKER_FILENAME = "mlprod-workspace-id"
TABLE_OBJECTS_DIR = "tables"
"""Where ``mlprod.data`` keeps table objects, inside the artifact store (a store of its own)."""
_ID = re.compile(r"^[0-9a-f]{32}$")
_FIX_CONFIG = (
    "point [database] url in mlprod.toml (or MLPROD_DATABASE_URL) to the database this workspace was "
    "created with, or restore that database from a backup"
)


def bind_existing(engine: Engine, artifacts: Path, database: str) -> str:
    """The workspace id shared by the database and the artifact store at ``artifacts``; raise
    ``ForeignDatabaseError`` when they do not belong together. Adopts a workspace from before ids."""
    stored, marked = database_id(engine), marker_id(artifacts)
    if stored is not None and marked is not None:
        if stored != marked:
            raise ForeignDatabaseError(
                f"the metadata database {database} belongs to workspace {stored}, but the artifact store "
                f"{artifacts} was written with the database of workspace {marked}: {_FIX_CONFIG} "
                "(or [artifacts] path to the store of this database)"
            )
        return stored
    count = count_objects(artifacts)
    if stored is not None:
        if count:
            raise ForeignDatabaseError(
                f"the artifact store {artifacts} holds {count:,} object(s) but no workspace id, while the "
                f"metadata database {database} belongs to workspace {stored}: they were not written "
                f"together. If they were (the store restored from a backup), write {stored} into "
                f"{artifacts / MARKER_FILENAME}; otherwise {_FIX_CONFIG}"
            )
        return _adopt(engine, artifacts, stored)
    if count and not knows_any_object(engine, artifacts):
        raise ForeignDatabaseError(
            f"the metadata database {database} knows none of the {count:,} object(s) in the artifact "
            f"store {artifacts}: it is not the database they were written with: {_FIX_CONFIG}"
        )
    return _adopt(engine, artifacts, marked or new_workspace_id())


def bind_new(engine: Engine, artifacts: Path, database: str) -> str:
    """Give a database being initialised a new workspace id and mark the (empty) artifact store with it.

    Refuses a store that already holds objects, and a database that already holds tables or models:
    pairing either with a fresh counterpart would orphan them.
    """
    count = count_objects(artifacts)
    if count:
        raise MissingDatabaseError(
            f"the artifact store {artifacts} already holds {count:,} object(s) of another workspace; a new "
            "database would know none of them (and `mlprod data gc` would delete them). Restore that "
            "workspace's database and its mlprod.toml instead, or choose an empty [artifacts] path"
        )
    if holds_data(engine):
        raise ForeignDatabaseError(
            f"the metadata database {database} already holds the tables or models of workspace "
            f"{database_id(engine) or '(created before workspace ids)'}; to use it from another directory "
            "copy that workspace's mlprod.toml there instead of running `mlprod init`"
        )
    workspace_id = new_workspace_id()
    _write_database_id(engine, workspace_id, replace=True)
    with contextlib.suppress(FileNotFoundError):
        (artifacts / MARKER_FILENAME).unlink()  # an empty store's stale marker
    write_marker(artifacts, workspace_id)
    return workspace_id


def missing_database(database: str, artifacts: Path, root: Path) -> MissingDatabaseError:
    """The error for a workspace whose SQLite database file is gone."""
    count = count_objects(artifacts)
    if count:
        held = (
            f", but the artifact store {artifacts} holds {count:,} object(s) written with it. mlprod "
            "creates a database only in `mlprod init` (an empty one would know none of the tables and "
            "models, and `mlprod data gc` would delete their files)"
        )
        fix = _FIX_CONFIG
    else:
        held = ". mlprod creates a database only in `mlprod init`"
        fix = (
            f"{_FIX_CONFIG}; or, to start over (the artifact store holds nothing), remove "
            f"{root / 'mlprod.toml'} and run `mlprod init {root}`"
        )
    return MissingDatabaseError(f"the metadata database {database} does not exist{held}: {fix}")


def empty_database(database: str, artifacts: Path) -> MissingDatabaseError:
    """The error for a configured database that holds no mlprod schema at all."""
    count = count_objects(artifacts)
    held = f", while the artifact store {artifacts} holds {count:,} object(s)" if count else ""
    return MissingDatabaseError(
        f"the metadata database {database} is empty (no mlprod schema){held}: it is not the database "
        f"this workspace was created with, and mlprod creates one only in `mlprod init`: {_FIX_CONFIG}"
    )


def new_workspace_id() -> str:
    return uuid.uuid4().hex


def database_id(engine: Engine) -> str | None:
    """The workspace id stored in the database, None before it has one."""
    with _translated("reading the workspace id"), engine.connect() as conn:
        return conn.execute(
            sa.select(workspace_identity.c.workspace_id).where(workspace_identity.c.id == 1)
        ).scalar()


def marker_id(artifacts: Path) -> str | None:
    """The workspace id in the artifact store's marker file, None when there is none."""
    path = artifacts / MARKER_FILENAME
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ForeignDatabaseError(f"cannot read the workspace id in {path}: {exc}") from exc
    if not _ID.match(text):
        raise ForeignDatabaseError(
            f"{path} does not hold a workspace id (32 hex digits) but {text[:40]!r}; write the id of the "
            "workspace's database into it (SELECT workspace_id FROM workspace_identity)"
        )
    return text


def write_marker(artifacts: Path, workspace_id: str) -> str:
    """Create the marker unless one exists (atomically: two processes adopting agree); return its id."""
    artifacts.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=artifacts, prefix=f".{MARKER_FILENAME}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(workspace_id + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, artifacts / MARKER_FILENAME)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return marker_id(artifacts) or workspace_id


def count_objects(artifacts: Path) -> int:
    """Blobs in the artifact store (models, reports) and in its table-object store."""
    return sum(1 for _ in _blobs(artifacts)) + sum(1 for _ in _blobs(artifacts / TABLE_OBJECTS_DIR))


def holds_data(engine: Engine) -> bool:
    """True when the database records any table commit or model version."""
    with _translated("reading the metadata database"), engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        return any(
            table.name in tables
            and conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()
            for table in (data_commits, model_versions)
        )


def knows_any_object(engine: Engine, artifacts: Path) -> bool:
    """True when some table commit or model artifact the database records exists in the store."""
    with _translated("reading the metadata database"), engine.connect() as conn:
        commits = conn.execute(sa.select(data_commits.c.id)).scalars()
        if any(_blob_path(artifacts / TABLE_OBJECTS_DIR, sha).is_file() for sha in commits):
            return True
        models = conn.execute(sa.select(model_versions.c.artifact_sha256)).scalars()
        return any(_blob_path(artifacts, sha).is_file() for sha in models)


def _adopt(engine: Engine, artifacts: Path, candidate: str) -> str:
    """Write the id where it is missing (database first: a marker never names an id no database has)."""
    try:
        stored = _write_database_id(engine, candidate, replace=False)
        marked = write_marker(artifacts, stored)
    except StorageFullError:
        return candidate  # a full disk: open as before, adopt on a later open
    if marked != stored:
        raise ForeignDatabaseError(
            f"the artifact store {artifacts} was just marked for workspace {marked} by another process, "
            f"but the metadata database belongs to workspace {stored}: {_FIX_CONFIG}"
        )
    return stored


def _write_database_id(engine: Engine, workspace_id: str, *, replace: bool) -> str:
    """Store the id (``replace``: overwrite any) and return the one the database holds afterwards."""
    row = {"id": 1, "workspace_id": workspace_id, "created_at": datetime.now(UTC)}
    with _translated("writing the workspace id"):
        try:
            with engine.begin() as conn:
                if replace:
                    conn.execute(sa.delete(workspace_identity))
                conn.execute(sa.insert(workspace_identity).values(**row))
        except IntegrityError:
            pass  # another process adopting the same workspace won; its id is the one
    stored = database_id(engine)
    assert stored is not None
    return stored


def _blobs(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for fan in root.iterdir():
        if len(fan.name) == 2 and fan.is_dir():
            yield from (blob for blob in fan.iterdir() if len(blob.name) == 62)


def _blob_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256[2:]


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{what} failed: {str(getattr(exc, 'orig', None) or exc).strip()}") from exc
