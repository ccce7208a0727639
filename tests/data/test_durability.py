"""Crashes and concurrent writers: readers see whole versions, no update is lost, gc clears debris."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from mlprod.data import TableStore, collect_garbage, merge_branches
from mlprod.workspace import Workspace

WRITER = textwrap.dedent(
    """
    import sys, numpy as np, pyarrow as pa
    from mlprod.errors import ConflictError
    from mlprod.workspace import Workspace
    from mlprod.data import TableStore
    root, writer, commits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(writer)
    with Workspace.open(root) as ws:
        tables = TableStore(ws)
        for i in range(commits):
            ids = rng.choice(20_000, 2_500, replace=False) if writer == 0 else [100_000 * writer + i]
            gen = pa.array([writer * 1000 + i] * len(ids))
            batch = pa.table({"id": pa.array(ids, pa.int64()), "gen": gen})
            while True:
                try:
                    tables.commit("t", batch, message=f"writer {writer} commit {i}")
                    break
                except ConflictError:
                    print("conflict", flush=True)
    """
)


def start_writer(root: Path, writer: int, commits: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(writer), str(commits)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def root(workspace: Workspace) -> Path:
    tables = TableStore(workspace)
    ids = pa.array(range(20_000), pa.int64())
    tables.create("t", key=["id"], data=pa.table({"id": ids, "gen": pa.array([-1] * 20_000)}), buckets=16)
    return workspace.root


def consistent(tables: TableStore) -> None:
    """Every commit on main reads back whole: as many rows as it recorded, every object intact."""
    for commit in tables.log("t"):
        assert tables.checkout("t", commit.id).num_rows == commit.num_rows


@pytest.mark.parametrize("delay", [0.8, 1.6, 2.4])
def test_kill_9_while_committing_leaves_old_or_new_never_a_mix(root: Path, delay: float) -> None:
    writer = start_writer(root, 0, 50)  # 2,500 of 20,000 rows per commit: compacts every commit
    time.sleep(delay)
    if writer.poll() is None:
        os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with Workspace.open(root) as ws:
        tables = TableStore(ws)
        consistent(tables)
        head = tables.checkout("t")
        assert head.num_rows == 20_000
        generations = set(head.column("gen").to_pylist())
        assert generations <= {-1, *range(50)}
        report = collect_garbage(tables, grace_seconds=0)
        consistent(tables)  # gc removed only what no commit needs
        assert collect_garbage(tables, grace_seconds=0).removed == 0
        assert report.kept > 0


def test_concurrent_writers_lose_no_update(root: Path) -> None:
    writers = [start_writer(root, w, 6) for w in (1, 2, 3)]
    outputs = [w.communicate(timeout=300) for w in writers]
    assert all(w.returncode == 0 for w in writers), [err for _, err in outputs]
    with Workspace.open(root) as ws:
        tables = TableStore(ws)
        ids = set(tables.checkout("t").column("id").to_pylist())
        assert {100_000 * w + i for w in (1, 2, 3) for i in range(6)} <= ids
        assert len([c for c in tables.log("t") if c.message.startswith("writer")]) == 18
        consistent(tables)


def test_gc_removes_only_unreferenced_objects_past_the_grace_period(root: Path) -> None:
    with Workspace.open(root) as ws:
        tables = TableStore(ws)
        orphan = tables.objects.put_bytes(b"left by a writer killed before moving its branch")
        assert collect_garbage(tables).removed == 0  # younger than the default grace period
        dry = collect_garbage(tables, grace_seconds=0, dry_run=True)
        assert dry.removed == 1 and tables.objects.exists(orphan)
        report = collect_garbage(tables, grace_seconds=0)
        assert report.removed == 1 and report.removed_bytes > 0 and not tables.objects.exists(orphan)
        consistent(tables)
        with pytest.raises(ValueError, match="grace period"):
            collect_garbage(tables, grace_seconds=-1)


@pytest.mark.postgres
def test_versioned_tables_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    with Workspace.init(tmp_path / "pg", database_url=postgres_url) as ws:
        tables = TableStore(ws)
        tables.create("t", key=["id"], data=pa.table({"id": [1, 2], "gen": [1, 2]}))
        tables.branch("t", "dev")
        tables.commit("t", pa.table({"id": [2], "gen": [3]}), branch="dev")
        tables.commit("t", pa.table({"id": [1], "gen": [5]}))
        merge_branches(tables, "t", "dev")
        assert tables.checkout("t").sort_by("id").column("gen").to_pylist() == [5, 3]
        root = ws.root
    writers = [start_writer(root, w, 4) for w in (1, 2)]
    outputs = [w.communicate(timeout=300) for w in writers]
    assert all(w.returncode == 0 for w in writers), [err for _, err in outputs]
    with Workspace.open(root) as ws:
        ids = set(TableStore(ws).checkout("t").column("id").to_pylist())
        assert {100_000 * w + i for w in (1, 2) for i in range(4)} <= ids
