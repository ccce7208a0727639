import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import mlprod.meta.database as database_module
from mlprod.errors import DatabaseError
from mlprod.meta import connect, metadata, upgrade_to_head
from mlprod.meta.database import is_at_head


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'meta.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_migrations_are_idempotent_and_reach_head(tmp_path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'meta.db'}")
    assert not is_at_head(engine)
    upgrade_to_head(engine)
    upgrade_to_head(engine)
    assert is_at_head(engine)
    assert set(sa.inspect(engine).get_table_names()) >= set(metadata.tables)


def _schema_drift(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def test_migrations_create_exactly_the_declared_schema(tmp_path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade_to_head(engine)
    assert _schema_drift(engine) == []


@pytest.mark.postgres
def test_migrations_match_the_schema_on_postgres(postgres_url: str) -> None:
    engine = connect(postgres_url)
    upgrade_to_head(engine)
    assert is_at_head(engine)
    assert _schema_drift(engine) == []


def test_unreachable_server_fails_fast_with_password_hidden() -> None:
    started = time.monotonic()
    with pytest.raises(
        DatabaseError, match=r"cannot connect to database postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/db"
    ):
        connect("postgresql+psycopg://u:secret@127.0.0.1:1/db")
    assert time.monotonic() - started < 10


def test_url_that_does_not_parse() -> None:
    with pytest.raises(DatabaseError, match="is not a valid SQLAlchemy URL"):
        connect("not a url")


def test_unknown_driver_says_what_to_install() -> None:
    with pytest.raises(DatabaseError, match=r"no driver for database URL nosuchdb://"):
        connect("nosuchdb://host/db")


def test_sqlite_in_a_missing_directory(tmp_path) -> None:
    with pytest.raises(DatabaseError, match="is not a directory"):
        connect(f"sqlite:///{tmp_path / 'missing' / 'meta.db'}")


def test_sqlite_ddl_is_transactional(tmp_path) -> None:
    """A migration interrupted half-way must leave no table behind (kill -9 during init)."""
    engine = connect(f"sqlite:///{tmp_path / 'meta.db'}")

    def interrupted_migration() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE half (x INTEGER)")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        interrupted_migration()
    assert "half" not in sa.inspect(engine).get_table_names()


def test_the_head_read_from_the_migration_files_is_alembics(tmp_path) -> None:
    """``is_at_head`` reads the head without Alembic (start-up time); it must agree with Alembic."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from mlprod.meta.database import head_revision

    config = Config()
    config.set_main_option("script_location", str(Path(database_module.__file__).with_name("migrations")))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()
    engine = connect(f"sqlite:///{tmp_path / 'meta.db'}")
    upgrade_to_head(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    assert not is_at_head(engine)
