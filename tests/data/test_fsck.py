"""``fsck_tables``: every kind of damage is found and named, nothing is written."""

from __future__ import annotations

import pyarrow as pa
import pytest
import sqlalchemy as sa

from mlprod.data import TableStore, fsck_tables
from mlprod.errors import NotFoundError
from mlprod.meta.tables import data_commits
from mlprod.workspace import Workspace


@pytest.fixture
def tables(workspace: Workspace) -> TableStore:
    store = TableStore(workspace)
    rows = pa.table({"id": pa.array(range(100), pa.int64()), "v": pa.array([0.5] * 100)})
    store.create("t", key=["id"], data=rows, buckets=4)
    store.commit("t", pa.table({"id": pa.array([1], pa.int64()), "v": [9.5]}), message="small")
    store.create("u", key=["id"], data=pa.table({"id": [1, 2]}), buckets=2)
    return store


def snapshot(tables: TableStore) -> dict[str, float]:
    """Every file under the workspace with its mtime: fsck must leave it exactly as it was."""
    root = tables._ws.root
    return {
        str(p): p.stat().st_mtime for p in root.rglob("*") if p.is_file() and not p.name.startswith("meta.db")
    }


def test_an_intact_workspace_is_ok_and_fsck_writes_nothing(tables: TableStore) -> None:
    before = snapshot(tables)
    report = fsck_tables(tables)
    assert report.ok and report.damage == ()
    assert (report.tables, report.refs, report.commits) == (2, 2, 5)
    every = {
        sha
        for c in ("t", "u")
        for info in tables.history.commits(c).values()
        for sha in tables.manifest(info.id).objects() | {info.id}
    }
    assert report.objects == len(every) and report.bytes == sum(
        tables.objects.path_of(s).stat().st_size for s in every
    )
    assert snapshot(tables) == before
    assert fsck_tables(tables, "u").commits == 2


def test_missing_and_corrupted_objects_and_manifests_are_all_reported(tables: TableStore) -> None:
    head = tables.resolve("t")
    manifest = tables.manifest(head.id)
    bucket = next(sha for sha in manifest.buckets if sha)
    change = manifest.deltas[0].sha256
    tables.objects.path_of(bucket).unlink()
    tables.objects.path_of(change).write_bytes(b"flipped")
    u_head = tables.resolve("u").id
    tables.objects.path_of(u_head).unlink()
    progress: list[tuple[int, int]] = []
    report = fsck_tables(tables, progress=lambda done, total: progress.append((done, total)))
    found = {(d.kind, d.table, d.object) for d in report.damage}
    assert found == {
        ("missing-object", "t", bucket),
        ("corrupt-object", "t", change),
        ("missing-manifest", "u", u_head),
    }
    corrupt = next(d for d in report.damage if d.kind == "corrupt-object")
    assert (
        f"artifact {change} at" in corrupt.detail and "is corrupted: its content hashes to" in corrupt.detail
    )
    assert not report.ok and report.to_dict()["ok"] is False
    assert progress[-1] == (report.objects, report.objects) and len(progress) == report.objects
    only_u = fsck_tables(tables, "u")
    assert [d.kind for d in only_u.damage] == ["missing-manifest"]


def test_a_manifest_that_disagrees_with_its_row_or_does_not_parse(tables: TableStore) -> None:
    head = tables.resolve("t").id
    with tables._ws.engine.begin() as conn:
        conn.execute(data_commits.update().where(data_commits.c.id == head).values(num_rows=7))
    garbage = tables.objects.put_bytes(b'{"not": "a manifest"}')
    with tables._ws.engine.begin() as conn:
        row = conn.execute(sa.select(data_commits).where(data_commits.c.id == head)).one()._asdict()
        conn.execute(data_commits.insert().values({**row, "id": garbage, "parents": ["0" * 64]}))
    report = fsck_tables(tables, "t")
    kinds = {(d.kind, d.commit): d.detail for d in report.damage}
    assert kinds[("manifest-mismatch", head)] == "num_rows is 100 in the manifest but 7 in the metadata DB"
    assert kinds[("bad-manifest", garbage)].startswith("manifest does not parse:")
    assert kinds[("missing-parent", garbage)] == f"parent {'0' * 12} is not a commit of the table"


def test_unknown_table(tables: TableStore) -> None:
    with pytest.raises(NotFoundError, match=r"table 'nope' not found \(tables: t, u\)"):
        fsck_tables(tables, "nope")
