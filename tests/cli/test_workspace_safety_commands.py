"""The CLI never recreates a lost metadata database, gc asks before deleting what the database does
not know, and ``data commit``/``data merge`` widen a table only when told (issue 27)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from mlprod.data import TableStore
from mlprod.workspace import Workspace
from tests.cli.conftest import Run


def _drop_sqlite(root: Path) -> None:
    for path in root.glob("meta.db*"):
        if path.is_file():
            path.unlink()


def test_read_commands_refuse_a_missing_database_and_create_nothing(mlprod: Run, tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        TableStore(ws).create("t", key=["id"], data=pa.table({"id": [1, 2], "x": [1.0, 2.0]}), buckets=2)
    _drop_sqlite(tmp_path / "ws")
    for args in (["data", "list"], ["data", "gc", "--grace", "0"], ["info"], ["models", "list"]):
        done = mlprod("-C", "ws", *args)
        assert done.returncode == 2, (args, done.stdout)
        assert done.stderr.count("\n") == 1 and "meta.db does not exist" in done.stderr
        assert "restore that database from a backup" in done.stderr
    assert not (tmp_path / "ws" / "meta.db").exists()
    objects = [p for p in (tmp_path / "ws" / "artifacts" / "tables").rglob("*") if p.parent.name != "tmp"]
    assert len([p for p in objects if p.is_file()]) == 4


def test_gc_refuses_to_delete_more_than_the_database_knows_until_confirmed(
    mlprod: Run, tmp_path: Path
) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        tables = TableStore(ws)
        tables.create("t", key=["id"], data=pa.table({"id": list(range(100)), "x": [0.5] * 100}), buckets=4)
        tables.create("u", key=["id"], data=pa.table({"id": [1], "x": [1.0]}), buckets=1)
        tables.history.drop_table("t")  # the database no longer knows t's 6 objects; it knows u's 3
        unknown = len(list(tables.objects)) - 3
    assert unknown == 6
    refused = mlprod("-C", "ws", "data", "gc", "--grace", "0")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "error: gc deleted nothing: it would delete 6 object(s) (" in refused.stderr
    assert "more than the 3 the metadata database sqlite:///" in refused.stderr
    assert "run `mlprod data gc --yes-delete-unknown`" in refused.stderr
    dry = mlprod("-C", "ws", "data", "gc", "--grace", "0", "--dry-run")
    assert dry.returncode == 0 and "would remove 6 object(s)" in dry.stdout
    assert "more than the 3 object(s) the metadata database knows" in " ".join(dry.stdout.split())
    confirmed = mlprod("-C", "ws", "data", "gc", "--grace", "0", "--yes-delete-unknown")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "removed 6 object(s)" in confirmed.stdout
    with Workspace.open(tmp_path / "ws") as ws:
        assert TableStore(ws).checkout("u").num_rows == 1


def test_commit_and_merge_refuse_a_new_column_unless_allowed(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    ws = ["-C", "ws"]
    (tmp_path / "a.csv").write_text("id,x\n1,1.0\n2,2.0\n")
    (tmp_path / "b.csv").write_text("id,x,note\n3,3.0,hi\n")
    assert mlprod(*ws, "data", "create", "t", "--key", "id", "--from", "a.csv").returncode == 0
    refused = mlprod(*ws, "data", "commit", "t", "b.csv")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "incoming data has column(s) 'note' that the table does not have" in refused.stderr
    assert "--allow-new-columns" in refused.stderr
    assert "note" not in mlprod(*ws, "data", "show", "t").stdout
    mlprod(*ws, "data", "branch", "t", "extra")
    done = mlprod(*ws, "data", "commit", "t", "b.csv", "--branch", "extra", "--allow-new-columns")
    assert done.returncode == 0, done.stderr
    assert "added column(s): note" in done.stdout
    merge = mlprod(*ws, "data", "merge", "t", "extra")
    assert merge.returncode == 2 and "'extra' has column(s) 'note' that 'main' does not have" in merge.stderr
    merged = mlprod(*ws, "data", "merge", "t", "extra", "--allow-new-columns")
    assert merged.returncode == 0 and "fast-forwarded" in merged.stdout, merged.stderr


def test_init_and_info_show_the_workspace_id(mlprod: Run, tmp_path: Path) -> None:
    created = mlprod("init", "ws")
    marker = (tmp_path / "ws" / "artifacts" / "mlprod-workspace-id").read_text().strip()
    assert f"workspace id:      {marker}" in created.stdout
    assert re.search(rf"workspace id\s+{marker}", mlprod("-C", "ws", "info").stdout)
