"""Opening the metadata database and bringing its schema to the latest migration.

SQLite (WAL, foreign keys on, a busy timeout so concurrent writers wait instead of failing) by
default; any SQLAlchemy URL, PostgreSQL in particular, when the workspace is shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from mlprod.errors import DatabaseError

_MIGRATIONS = Path(__file__).with_name("migrations")
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
    """True when the database schema is at the newest migration."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the metadata database's schema version: {exc}") from exc


def _alembic_config() -> AlembicConfig:
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


def _connect_timeout(url: sa.URL) -> dict[str, Any]:
    # Fail fast on an unreachable server instead of hanging a CLI call.
    return {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
