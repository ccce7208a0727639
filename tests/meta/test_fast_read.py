"""The sqlite3 read path gives the same rows as the SQLAlchemy one, and steps aside (None) whenever
the workspace is not in order, so that the full ``Workspace`` reports what is wrong."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from mlprod.data import TableStore
from mlprod.meta import fast_read
from mlprod.meta.workspace_id import MARKER_FILENAME
from mlprod.models import ModelVersion, Registry
from mlprod.workspace import Workspace


def _paths(ws: Workspace) -> tuple[Path, Path]:
    return ws.root / "meta.db", ws.artifacts.root


@pytest.fixture
def history(workspace: Workspace, registered: ModelVersion) -> Workspace:
    """Model ``toy`` with two alias moves; table ``t`` with three commits, a branch and a tag."""
    registry = Registry(workspace)
    registry.set_alias("toy", "staging", registered.version, why="try")
    tables = TableStore(workspace)
    tables.create("t", key=["id"], data=pa.table({"id": [1, 2], "x": [1.0, 2.0]}), buckets=2)
    tables.tag("t", "v1")
    tables.branch("t", "dev")
    tables.commit("t", pa.table({"id": [3], "x": [3.0]}), mode="append", message="more")
    tables.commit("t", pa.table({"id": [1], "x": [9.0]}), mode="upsert", message="fix")
    return workspace


def _fields(rows: list[object]) -> list[dict[str, object]]:
    return [dataclasses.asdict(row) for row in rows]  # type: ignore[call-overload]


def test_rows_equal_the_sqlalchemy_queries(history: Workspace) -> None:
    registry, tables = Registry(history), TableStore(history)
    with fast_read.open_read_only(*_paths(history)) as connection:
        assert connection is not None
        assert _fields(fast_read.model_summaries(connection)) == _fields(registry.models())
        moves = fast_read.alias_moves(connection, "toy")
        assert moves is not None and len(moves) == 2
        assert _fields(moves) == _fields(registry.alias_history("toy"))
        assert moves[0].at.tzinfo is not None
        for ref, limit in (("main", None), ("main", 2), ("dev", None), ("v1", None)):
            log = fast_read.table_log(connection, "t", ref, limit)
            assert log is not None and _fields(log) == _fields(tables.log("t", ref, limit=limit))
        assert _fields(fast_read.table_refs(connection, "t") or []) == _fields(tables.refs("t"))
        (listed,) = fast_read.tables(connection) or []
        head = tables.resolve("t")
        assert (listed.name, listed.key, listed.head_id, listed.head_rows) == ("t", ("id",), head.id, 3)
        assert [r.name for r in listed.refs] == ["dev", "main", "v1"]


def test_what_only_the_full_path_can_report_is_none(history: Workspace) -> None:
    with fast_read.open_read_only(*_paths(history)) as connection:
        assert connection is not None
        assert fast_read.alias_moves(connection, "nope") is None
        assert fast_read.table_refs(connection, "nope") is None
        assert fast_read.table_log(connection, "t", "nope") is None
        head = TableStore(history).resolve("t").id
        assert fast_read.table_log(connection, "t", head[:8]) is None  # a commit id: the full path


def test_the_connection_cannot_write(workspace: Workspace) -> None:
    with fast_read.open_read_only(*_paths(workspace)) as connection:
        assert connection is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            connection.execute("DELETE FROM workspace_identity")


def test_a_workspace_out_of_order_is_left_to_the_full_path(workspace: Workspace, tmp_path: Path) -> None:
    database, artifacts = _paths(workspace)
    workspace.close()
    marker = artifacts / MARKER_FILENAME
    assert fast_read.MARKER_FILENAME == MARKER_FILENAME

    def opened() -> bool:
        with fast_read.open_read_only(database, artifacts) as connection:
            return connection is not None

    assert opened()
    good = marker.read_text()
    for bad in ("0" * 32 + "\n", "garbled\n"):  # another workspace's store; a broken marker
        marker.write_text(bad)
        assert not opened()
    marker.unlink()
    assert not opened()
    marker.write_text(good)
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'older'")
    assert not opened()  # the full path upgrades or refuses
    with fast_read.open_read_only(tmp_path / "gone.db", artifacts) as connection:
        assert connection is None
    (tmp_path / "empty.db").write_bytes(b"")
    with fast_read.open_read_only(tmp_path / "empty.db", artifacts) as connection:
        assert connection is None
