"""Opening the metadata database and bringing its schema to the latest migration.

SQLite (WAL, foreign keys on, a busy timeout so concurrent writers wait instead of failing) by
default; any SQLAlchemy URL, PostgreSQL in particular, when the workspace is shared.

On a full disk SQLite cannot even open a WAL database for reading (its shared-memory index must be
created or grown). When the write-ahead log is empty the database file alone is the whole truth,
so it is then opened read-only and immutable: reads work, and any write fails with
``StorageFullError`` instead of a raw SQLite message.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from mlprod.diskspace import full_error, nearly_full
from mlprod.errors import DatabaseError, StorageFullError
from mlprod.meta.revision import MIGRATIONS as _MIGRATIONS
from mlprod.meta.revision import head_revision

SQLITE_BUSY_TIMEOUT_MS = 30_000


def connect(url: str) -> Engine:
    """Create an engine for ``url`` and prove it answers; raise ``DatabaseError`` if not."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"database URL {url!r} is not a valid SQLAlchemy URL") from exc
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=_connect_timeout(parsed))
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except StorageFullError:
        engine = _read_only_when_full(parsed)
    except NoSuchModuleError as exc:
        raise DatabaseError(
            f"no driver for database URL {shown}; for PostgreSQL install mlprod[postgres] "
            "and use postgresql+psycopg://"
        ) from exc
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseError(f"cannot connect to database {shown}: {reason}") from exc
    return engine


def upgrade_to_head(engine: Engine) -> None:
    """Apply every pending Alembic migration (idempotent)."""
    from alembic import command
    from alembic.util.exc import CommandError

    config = _alembic_config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except CommandError as exc:
        raise DatabaseError(
            f"the metadata database's schema is unknown to this mlprod ({exc}); "
            "it was probably written by a newer mlprod: upgrade mlprod"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migrating the metadata database failed: {exc}") from exc


def is_at_head(engine: Engine) -> bool:
    """True when the database schema is at the newest migration.

    Every command opening a workspace asks this, so it reads Alembic's version table and the
    migration files' ``revision`` lines directly: importing Alembic would cost more than the command.
    """
    return schema_revision(engine) == head_revision()


def schema_revision(engine: Engine) -> str | None:
    """The migration the database's schema is at; None for a database mlprod never initialised."""
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the metadata database's schema version: {exc}") from exc
    return current[0] if len(current) == 1 else None


def _alembic_config() -> Any:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _sqlite_engine(url: sa.URL) -> Engine:
    database = url.database
    if database and database != ":memory:":
        parent = Path(database).parent
        if not parent.is_dir():
            raise DatabaseError(f"cannot create SQLite database {database}: {parent} is not a directory")
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    _map_full_disk(engine, database or "")

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite runs DDL outside transactions; take transaction control so that a migration
        # killed half-way rolls back instead of leaving half a schema.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _map_full_disk(engine: Engine, database: str, *, read_only: bool = False) -> None:
    """Turn SQLite's full-disk failures (and writes to a read-only fallback) into ``StorageFullError``."""

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context: sa.engine.ExceptionContext) -> None:
        exc = context.original_exception
        if not isinstance(exc, sqlite3.Error):
            return
        message = str(exc)
        if read_only and "readonly" in message:
            raise full_error(
                "writing the metadata database (opened read-only because the disk is full)", database
            ) from exc
        if "database or disk is full" in message or ("disk I/O error" in message and nearly_full(database)):
            raise full_error("writing the metadata database", database) from exc


def _read_only_when_full(url: sa.URL) -> Engine:
    """The SQLite database opened read-only and immutable; only safe while its WAL is empty."""
    database = url.database or ""
    wal = Path(f"{database}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise full_error(
            "opening the metadata database (its write-ahead log holds commits not yet in the file, "
            "so it cannot be read without space to replay it)",
            database,
            after="nothing was changed",
        )
    uri = f"file:{quote(str(Path(database).resolve()))}?mode=ro&immutable=1"
    engine = sa.create_engine(sa.URL.create("sqlite", database=uri, query={"uri": "true"}))
    _map_full_disk(engine, database, read_only=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise full_error("opening the metadata database", database, after="nothing was changed") from exc
    return engine


def _connect_timeout(url: sa.URL) -> dict[str, Any]:
    # Fail fast on an unreachable server instead of hanging a CLI call.
    return {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
