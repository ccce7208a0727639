import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlprod.errors import ConfigError, DatabaseError, WorkspaceError
from mlprod.workspace import Workspace, default_demo_home, locate, open_or_init


def test_init_creates_config_database_and_artifact_store(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        assert (ws.root / "mlprod.toml").is_file()
        assert (ws.root / "meta.db").is_file()
        assert ws.artifacts.root == ws.root / "artifacts"
        assert ws.artifacts.root.is_dir()
        assert "model_versions" in sa.inspect(ws.engine).get_table_names()


def test_init_twice_is_refused(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    with pytest.raises(WorkspaceError, match="is already an mlprod workspace"):
        Workspace.init(tmp_path)


def test_init_on_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(WorkspaceError, match="it is a file"):
        Workspace.init(tmp_path / "f")


def test_failed_init_into_a_new_directory_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new"
    with pytest.raises(DatabaseError, match="cannot connect"):
        Workspace.init(target, database_url="postgresql+psycopg://u:p@127.0.0.1:1/db")
    assert not target.exists()


def test_failed_init_into_an_existing_directory_keeps_what_was_there(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatabaseError):
        Workspace.init(tmp_path, database_url="postgresql+psycopg://u:p@127.0.0.1:1/db")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_open_reports_a_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist; create it with `mlprod init"):
        Workspace.open(tmp_path / "nope")
    with pytest.raises(WorkspaceError, match=r"is not an mlprod workspace \(no mlprod.toml\)"):
        Workspace.open(tmp_path)


def test_open_reports_an_unreadable_config(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    config = tmp_path / "mlprod.toml"
    config.unlink()
    config.mkdir()  # exists but cannot be read as a file
    with pytest.raises(WorkspaceError, match=r"no mlprod\.toml"):
        Workspace.open(tmp_path)
    config.rmdir()
    config.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read config"):
        Workspace.open(tmp_path)


def test_open_with_an_unknown_key_names_it(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    with (tmp_path / "mlprod.toml").open("a") as f:
        f.write("\n[database]\nurll = 'x'\n")
    with pytest.raises(ConfigError, match=r"mlprod\.toml"):
        Workspace.open(tmp_path)


def test_find_walks_up_from_a_subdirectory(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    with Workspace.find(deep, environ={}) as ws:
        assert ws.root == tmp_path.resolve()


def test_mlprod_home_wins_over_the_directory(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "one").close()
    Workspace.init(tmp_path / "two").close()
    env = {"MLPROD_HOME": str(tmp_path / "two")}
    assert locate(tmp_path / "one", environ=env) == (tmp_path / "two").resolve()


def test_find_without_a_workspace_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(
        WorkspaceError, match=r"no mlprod workspace in .* run `mlprod init` there or set MLPROD_HOME"
    ):
        Workspace.find(tmp_path, environ={})


def test_database_url_from_the_environment_is_used(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.db"
    with Workspace.init(tmp_path / "ws", environ={"MLPROD_DATABASE_URL": f"sqlite:///{other}"}) as ws:
        assert ws.database_url == f"sqlite:///{other}"
    assert other.is_file()
    assert not (tmp_path / "ws" / "meta.db").exists()
    assert 'url = ""' in (tmp_path / "ws" / "mlprod.toml").read_text()  # the environment is not persisted


def test_open_or_init_reuses_an_existing_workspace(tmp_path: Path) -> None:
    with open_or_init(tmp_path / "ws") as first:
        first.artifacts.put_bytes(b"kept")
    with open_or_init(tmp_path / "ws") as second:
        assert len(list(second.artifacts)) == 1


def test_demo_home_follows_xdg_cache_home(tmp_path: Path) -> None:
    assert default_demo_home({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "mlprod" / "demo"


@pytest.mark.postgres
def test_workspace_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    with Workspace.init(tmp_path, database_url=postgres_url) as ws:
        assert ws.engine.dialect.name == "postgresql"
        assert not (tmp_path / "meta.db").exists()
    with Workspace.open(tmp_path) as reopened:
        assert reopened.database_url == postgres_url


def test_failed_init_removes_the_parent_directories_it_created(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError):
        Workspace.init(tmp_path / "a" / "b" / "c", database_url="postgresql+psycopg://u@127.0.0.1:1/db")
    assert os.listdir(tmp_path) == []


def test_a_schema_newer_than_this_mlprod_is_named(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(DatabaseError, match="written by a newer mlprod: upgrade mlprod"):
        Workspace.open(tmp_path)


def test_opening_never_writes_and_gc_clears_temporaries_of_killed_writers(tmp_path: Path) -> None:
    from mlprod.data import TableStore, collect_garbage

    Workspace.init(tmp_path).close()
    stale = tmp_path / "artifacts" / "tmp" / "put-killed"
    stale.write_bytes(b"half a blob")
    old = 1_000_000_000
    os.utime(stale, (old, old))
    with Workspace.open(tmp_path):
        assert stale.exists()  # a read command (every command opens the workspace) deletes nothing
    with Workspace.open(tmp_path) as ws:
        assert collect_garbage(TableStore(ws)).temporaries == 1
    assert not stale.exists()
