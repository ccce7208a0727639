"""A workspace's metadata database is never recreated silently, nor swapped for another one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from mlprod.data import TableStore
from mlprod.errors import DatabaseError, ForeignDatabaseError, MissingDatabaseError
from mlprod.meta.scratch import scratch_database
from mlprod.meta.workspace_id import MARKER_FILENAME, database_id, marker_id
from mlprod.workspace import Workspace
from tests.conftest import POSTGRES_ENV


def _with_table(root: Path, database_url: str | None = None) -> str:
    """A workspace at ``root`` holding one table (4 objects: 2 manifests, 2 buckets); its id."""
    with Workspace.init(root, database_url=database_url) as ws:
        TableStore(ws).create("t", key=["id"], data=pa.table({"id": [1, 2], "x": [1.0, 2.0]}), buckets=2)
        return ws.workspace_id


def _drop_sqlite(root: Path) -> None:
    for path in root.glob("meta.db*"):
        if path.is_file():
            path.unlink()


def _point_to(root: Path, url: str) -> None:
    with Workspace.open(root) as ws:
        ws.set_config("database", "url", url)


def _as_before_ids(root: Path) -> None:
    """Make the workspace look like one created before workspace ids existed."""
    engine = sa.create_engine(f"sqlite:///{root / 'meta.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM workspace_identity"))
    engine.dispose()
    (root / "artifacts" / MARKER_FILENAME).unlink(missing_ok=True)


def test_init_writes_the_same_id_in_the_database_and_the_artifact_store(tmp_path: Path) -> None:
    with Workspace.init(tmp_path) as ws:
        assert len(ws.workspace_id) == 32
        assert database_id(ws.engine) == marker_id(ws.artifacts.root) == ws.workspace_id
    with Workspace.open(tmp_path) as ws:
        assert ws.workspace_id == marker_id(tmp_path / "artifacts")


def test_a_missing_database_file_is_refused_and_not_recreated(tmp_path: Path) -> None:
    _with_table(tmp_path)
    _drop_sqlite(tmp_path)
    with pytest.raises(
        MissingDatabaseError,
        match=rf"the metadata database {tmp_path}/meta.db does not exist, but the artifact store "
        rf"{tmp_path}/artifacts holds 4 object\(s\) written with it\. .* restore that database from a backup",
    ):
        Workspace.open(tmp_path)
    assert not (tmp_path / "meta.db").exists()
    assert len(list((tmp_path / "artifacts" / "tables").rglob("*"))) > 4  # nothing deleted


def test_a_missing_database_of_an_empty_workspace_says_how_to_start_over(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    _drop_sqlite(tmp_path)
    with pytest.raises(MissingDatabaseError, match=r"remove .*mlprod\.toml and run `mlprod init"):
        Workspace.open(tmp_path)
    assert not (tmp_path / "meta.db").exists()


def test_an_empty_database_with_a_full_artifact_store_is_refused(tmp_path: Path) -> None:
    _with_table(tmp_path / "ws")
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(
        MissingDatabaseError,
        match=r"empty\.db is empty \(no mlprod schema\), while the artifact store .* holds 4",
    ):
        Workspace.open(tmp_path / "ws", environ={"MLPROD_DATABASE_URL": f"sqlite:///{empty}"})
    engine = sa.create_engine(f"sqlite:///{empty}")
    assert sa.inspect(engine).get_table_names() == []  # not migrated
    engine.dispose()


def test_a_config_pointing_to_another_workspaces_database_is_refused(tmp_path: Path) -> None:
    mine = _with_table(tmp_path / "a")
    theirs = _with_table(tmp_path / "b")
    _point_to(tmp_path / "a", f"sqlite:///{tmp_path / 'b' / 'meta.db'}")
    with pytest.raises(
        ForeignDatabaseError,
        match=rf"b/meta.db belongs to workspace {theirs}, but the artifact store .*a/artifacts was written "
        rf"with the database of workspace {mine}: point \[database\] url in mlprod.toml",
    ):
        Workspace.open(tmp_path / "a")
    with pytest.raises(ForeignDatabaseError):  # the same through the environment
        Workspace.open(
            tmp_path / "b", environ={"MLPROD_DATABASE_URL": f"sqlite:///{tmp_path / 'a' / 'meta.db'}"}
        )


def test_a_workspace_from_before_ids_is_adopted_on_first_open(tmp_path: Path) -> None:
    _with_table(tmp_path)
    _as_before_ids(tmp_path)
    with Workspace.open(tmp_path) as ws:
        assert marker_id(ws.artifacts.root) == database_id(ws.engine) == ws.workspace_id
        assert TableStore(ws).checkout("t").num_rows == 2
        adopted = ws.workspace_id
    with Workspace.open(tmp_path) as ws:
        assert ws.workspace_id == adopted


def test_an_old_workspace_with_an_unrelated_old_database_is_refused(tmp_path: Path) -> None:
    _with_table(tmp_path / "a")
    _with_table(tmp_path / "b")
    _as_before_ids(tmp_path / "a")
    _as_before_ids(tmp_path / "b")
    b_objects = tmp_path / "b" / "artifacts" / "tables"
    for blob in b_objects.rglob("*"):  # b's database now knows no object that a's store holds
        if blob.is_file() and blob.parent.name != "tmp":
            blob.unlink()
    with pytest.raises(
        ForeignDatabaseError,
        match=r"b/meta.db knows none of the 4 object\(s\) in the artifact store .*a/artifacts",
    ):
        Workspace.open(
            tmp_path / "a", environ={"MLPROD_DATABASE_URL": f"sqlite:///{tmp_path / 'b' / 'meta.db'}"}
        )
    assert marker_id(tmp_path / "a" / "artifacts") is None  # nothing adopted


def test_a_store_that_lost_its_marker_is_refused_until_it_is_restored(tmp_path: Path) -> None:
    workspace_id = _with_table(tmp_path)
    marker = tmp_path / "artifacts" / MARKER_FILENAME
    marker.unlink()
    with pytest.raises(
        ForeignDatabaseError,
        match=rf"holds 4 object\(s\) but no workspace id.*write {workspace_id} into {marker}",
    ):
        Workspace.open(tmp_path)
    marker.write_text(workspace_id + "\n")
    with Workspace.open(tmp_path) as ws:
        assert TableStore(ws).checkout("t").num_rows == 2


def test_a_garbled_marker_is_named(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    (tmp_path / "artifacts" / MARKER_FILENAME).write_text("not an id")
    with pytest.raises(
        ForeignDatabaseError, match=r"does not hold a workspace id \(32 hex digits\) but 'not an id'"
    ):
        Workspace.open(tmp_path)


def test_init_refuses_an_artifact_store_that_holds_objects(tmp_path: Path) -> None:
    _with_table(tmp_path)
    (tmp_path / "mlprod.toml").unlink()
    _drop_sqlite(tmp_path)
    before = sorted(p for p in (tmp_path / "artifacts").rglob("*"))
    with pytest.raises(MissingDatabaseError, match=r"already holds 4 object\(s\) of another workspace"):
        Workspace.init(tmp_path)
    assert sorted(p for p in (tmp_path / "artifacts").rglob("*")) == before
    assert not (tmp_path / "mlprod.toml").exists() and not (tmp_path / "meta.db").exists()


def test_init_refuses_a_database_that_holds_another_workspaces_data(tmp_path: Path) -> None:
    owner = _with_table(tmp_path / "a")
    with pytest.raises(
        ForeignDatabaseError, match=rf"already holds the tables or models of workspace {owner}"
    ):
        Workspace.init(tmp_path / "b", database_url=f"sqlite:///{tmp_path / 'a' / 'meta.db'}")
    assert not (tmp_path / "b").exists()
    with Workspace.open(tmp_path / "a") as ws:
        assert ws.workspace_id == owner


def test_an_unparsable_database_url_is_named_not_taken_for_a_missing_file(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    with pytest.raises(DatabaseError, match="database URL 'not a url' is not a valid SQLAlchemy URL"):
        Workspace.open(tmp_path, environ={"MLPROD_DATABASE_URL": "not a url"})


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh database on the same server as ``postgres_url``."""
    admin = os.environ.get(POSTGRES_ENV)
    if not admin:
        pytest.skip(f"set {POSTGRES_ENV} to run PostgreSQL tests")
    with scratch_database(admin) as url:
        yield url


@pytest.mark.postgres
def test_postgres_identity_refuses_an_empty_or_foreign_database(
    tmp_path: Path, postgres_url: str, second_postgres_url: str
) -> None:
    mine = _with_table(tmp_path / "a", postgres_url)
    elsewhere = {"MLPROD_DATABASE_URL": second_postgres_url}
    with pytest.raises(
        MissingDatabaseError, match=r"is empty \(no mlprod schema\), while the artifact store"
    ):
        Workspace.open(tmp_path / "a", environ=elsewhere)
    theirs = _with_table(tmp_path / "b", second_postgres_url)
    with pytest.raises(ForeignDatabaseError, match=rf"belongs to workspace {theirs}, .* workspace {mine}"):
        Workspace.open(tmp_path / "a", environ=elsewhere)
    with Workspace.open(tmp_path / "a") as ws:
        assert ws.workspace_id == mine and TableStore(ws).checkout("t").num_rows == 2
