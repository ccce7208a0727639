"""A really full disk (a small tmpfs at 0 bytes free): reads work, writes fail clearly, nothing is lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from mlprod.data import TableStore, fsck_tables
from mlprod.diskspace import free_bytes
from mlprod.errors import StorageFullError
from mlprod.models import Registry
from mlprod.workspace import Workspace

ROWS = pa.table({"id": pa.array(range(50), pa.int64()), "v": pa.array([1.5] * 50)})
NEW = pa.table({"id": pa.array(range(1000, 1200), pa.int64()), "v": pa.array([2.5] * 200)})
FULL = r"disk full writing .* at .*: 0 bytes free; free space and retry; nothing was committed"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs of its own, so filling it harms nothing else."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def full(disk: Path) -> Path:
    """A workspace with one table, on a disk then filled to 0 bytes free."""
    with Workspace.init(disk / "ws") as ws:
        TableStore(ws).create("t", key=["id"], data=ROWS, buckets=4)
    fill(disk, leave=0)
    return disk / "ws"


def fill(disk: Path, *, leave: int) -> None:
    with (disk / "filler").open("ab") as out:
        while (free_bytes(disk) or 0) > leave:
            try:
                out.write(b"\0" * max(4096, min(1 << 20, (free_bytes(disk) or 0) - leave)))
                out.flush()
            except OSError:
                break
    assert (free_bytes(disk) or 0) <= leave


def test_reads_work_with_zero_bytes_free(full: Path) -> None:
    assert free_bytes(full) == 0
    with Workspace.open(full) as ws:
        tables = TableStore(ws)
        assert [t.name for t in tables.tables()] == ["t"]
        assert [c.operation for c in tables.log("t")] == ["append", "create"]
        assert tables.checkout("t").sort_by("id").equals(ROWS)
        assert fsck_tables(tables).ok
        assert Registry(ws).models() == []


def test_read_commands_of_the_cli_work_with_zero_bytes_free(full: Path) -> None:
    def mlprod(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "mlprod", "-C", str(full), *args], capture_output=True, text=True, env=env
        )

    listed = mlprod("data", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"t\s+│ id\s+│ 50\s+│", listed.stdout)
    shown = mlprod("data", "show", "t")
    assert shown.returncode == 0 and "id (key)" in shown.stdout
    assert mlprod("models", "list").returncode == 0
    elsewhere = full.parent.parent / "t.csv"
    checkout = mlprod("data", "checkout", "t", "-o", str(elsewhere))
    assert checkout.returncode == 0 and elsewhere.read_text().count("\n") == 51
    onto_full = full.parent / "t.csv"
    refused_file = mlprod("data", "checkout", "t", "-o", str(onto_full))
    assert refused_file.returncode == 2
    assert re.search(
        r"error: disk full writing 50 rows at .*t\.csv: 0 bytes free; .*no file was left", refused_file.stderr
    )
    assert not onto_full.exists()
    refused = mlprod("data", "tag", "t", "v1")
    assert refused.returncode == 2
    assert re.search(r"error: disk full writing the metadata database \(opened read-only", refused.stderr)


def test_a_commit_on_a_full_disk_is_a_clear_error_and_loses_nothing(full: Path) -> None:
    with Workspace.open(full) as ws:
        tables = TableStore(ws)
        head = tables.resolve("t").id
        with pytest.raises(
            StorageFullError, match=r"disk full writing [\d,]+ bytes to the artifact store at "
        ):
            tables.commit("t", NEW)
        with pytest.raises(StorageFullError, match=FULL):
            tables.tag("t", "v1")
        assert tables.resolve("t").id == head and tables.checkout("t").num_rows == 50
    (full.parent / "filler").unlink()
    with Workspace.open(full) as ws:
        tables = TableStore(ws)
        assert tables.commit("t", NEW).num_rows == 250  # space freed: the same commit goes through
        assert not list((tables.objects.root / "tmp").iterdir())  # no partial file was left behind
        assert fsck_tables(tables).ok


@pytest.mark.parametrize("leave", [4096, 16384, 65536, 262144])
def test_a_commit_short_of_space_either_lands_whole_or_fails_clearly(disk: Path, leave: int) -> None:
    with Workspace.init(disk / "ws") as ws:
        TableStore(ws).create("t", key=["id"], data=ROWS, buckets=4)
    fill(disk, leave=leave)
    outcome = "committed"
    try:
        with Workspace.open(disk / "ws") as ws:
            TableStore(ws).commit("t", NEW)
    except StorageFullError as exc:
        outcome = str(exc)
        assert re.search(
            r"disk full (writing|opening) .* bytes free; free space and retry; nothing was", outcome
        )
    (disk / "filler").unlink()
    with Workspace.open(disk / "ws") as ws:
        tables = TableStore(ws)
        assert fsck_tables(tables).ok
        assert tables.checkout("t").num_rows == (250 if outcome == "committed" else 50), outcome


def test_the_metadata_database_full_is_a_clear_error(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    tables.create("t", key=["id"], data=ROWS, buckets=4)
    head = tables.resolve("t").id
    with workspace.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    workspace.engine.dispose()
    sa.event.listen(
        workspace.engine, "connect", lambda dbapi, _: dbapi.execute(f"PRAGMA max_page_count={pages}")
    )

    def tag_until_full() -> None:
        for i in range(200):  # each ref row grows the database until SQLite refuses a page
            tables.tag("t", f"tag-{i:03d}-" + "x" * 110)

    with pytest.raises(
        StorageFullError,
        match=r"disk full writing the metadata database at .*meta\.db: [\d,]+ bytes free; free space and "
        r"retry; nothing was committed",
    ):
        tag_until_full()
    assert tables.resolve("t").id == head
