"""Concurrent writers of one branch: disjoint keys all land (rebased), overlapping cells conflict, nothing
is lost or duplicated, and the branch's commit lock lets each writer land in turn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlprod.data import TableStore
from mlprod.data import tables as tables_module
from mlprod.data.tables import TableStore as Store
from mlprod.errors import ConflictError, MergeConflictError
from mlprod.meta.locks import exclusive
from mlprod.workspace import Workspace

WRITER = textwrap.dedent(
    """
    import sys, pyarrow as pa
    from mlprod.workspace import Workspace
    from mlprod.data import TableStore
    root, writer, commits, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with Workspace.open(root) as ws:
        tables = TableStore(ws)
        for i in range(commits):
            ids = [1_000_000 * writer + rows * i + j for j in range(rows)]
            x, y = pa.array([writer] * rows, pa.int64()), pa.array(["w"] * rows)
            batch = pa.table({"id": pa.array(ids, pa.int64()), "x": x, "y": y})
            result = tables.commit("t", batch, mode="append", message=f"writer {writer} commit {i}")
            print(result.rebases, result.retries, flush=True)
    """
)


def rows(ids: list[int], x: int | list[int], y: str = "base") -> pa.Table:
    xs = x if isinstance(x, list) else [x] * len(ids)
    return pa.table(
        {"id": pa.array(ids, pa.int64()), "x": pa.array(xs, pa.int64()), "y": pa.array([y] * len(ids))}
    )


def current(store: TableStore) -> dict[int, dict[str, Any]]:
    return {r.pop("id"): r for r in store.checkout("t").to_pylist()}


@pytest.fixture
def store(workspace: Workspace) -> TableStore:
    tables = TableStore(workspace)
    tables.create("t", key=["id"], data=rows(list(range(1000)), 0), buckets=8)
    return tables


@pytest.fixture
def other(workspace: Workspace) -> TableStore:
    """A second writer on the same workspace (its own manifest cache, like another process)."""
    return TableStore(workspace)


def test_a_commit_prepared_before_another_landed_is_rebased_onto_it(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    before = store.resolve("t").id
    interleave(lambda: other.commit("t", rows([1, 2000], 7, "theirs")))
    result = store.commit("t", rows([2, 3000], 8, "ours"))
    assert result.committed and result.rebases == 1 and result.retries == 0
    theirs = store.log("t")[1]
    assert theirs.parents == (before,) and store.log("t")[0].parents == (theirs.id,)
    got = current(store)
    assert got[1] == {"x": 7, "y": "theirs"} and got[2000] == {"x": 7, "y": "theirs"}
    assert got[2] == {"x": 8, "y": "ours"} and got[3000] == {"x": 8, "y": "ours"}
    assert len(got) == 1002 and store.resolve("t").num_rows == 1002
    assert result.counts == {"added": 1, "removed": 0, "changed": 1}


def test_a_rebase_reads_the_change_sets_that_landed_not_the_buckets(
    store: TableStore,
    other: TableStore,
    interleave: Callable[[Callable[[], object]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interleave(lambda: other.commit("t", rows([1, 2000], 7)))
    read: list[str] = []
    get_bytes = store.objects.get_bytes
    original = Store._land

    def land(self: Store, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(store.objects, "get_bytes", lambda sha: read.append(sha) or get_bytes(sha))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, "_land", land)
    result = store.commit("t", rows([2, 3000], 8))
    assert result.rebases == 1
    theirs = store.manifest(store.log("t")[1].id)
    assert theirs.change is not None and theirs.change.sha256 in read
    assert not set(read) & {sha for sha in theirs.buckets if sha}  # no bucket opened to rebase


def test_without_rebasing_the_moved_branch_is_an_error_and_nothing_is_committed(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    interleave(lambda: other.commit("t", rows([1], 7)))
    with pytest.raises(ConflictError, match=r"branch 'main' moved from \w{12} to \w{12} while this commit"):
        store.commit("t", rows([2], 8), rebase=False)
    assert current(store)[2] == {"x": 2 * 0, "y": "base"} and len(store.log("t")) == 3


def test_different_cells_of_one_row_merge_and_the_same_cell_changed_differently_conflicts(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    interleave(lambda: other.commit("t", rows([5], 0, "theirs")))  # y of row 5
    store.commit("t", rows([5], 50, "base"))  # x of row 5
    assert current(store)[5] == {"x": 50, "y": "theirs"}

    interleave(lambda: other.commit("t", rows([6, 7], [60, 70])))
    head = store.resolve("t").id
    with pytest.raises(MergeConflictError) as caught:
        store.commit("t", rows([6, 8], [61, 80]))
    message = str(caught.value)
    assert "table 't': a commit to branch 'main': 1 key(s) were changed differently" in message
    assert "{'id': 6} x: base=0 this commit=61 on the branch=60" in message
    assert "nothing was committed" in message
    assert [(c.key, c.column) for c in caught.value.conflicts] == [({"id": 6}, "x")]
    got = current(store)
    assert got[6]["x"] == 60 and got[7]["x"] == 70 and got[8]["x"] == 0  # the landed value is kept
    assert store.resolve("t").parents == (head,)


def test_a_row_deleted_meanwhile_conflicts_with_a_change_to_it_and_the_same_change_is_no_conflict(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    interleave(lambda: other.commit("t", pa.table({"id": [9]}), mode="delete"))
    with pytest.raises(MergeConflictError, match=r"\{'id': 9\} \*: base='present' this commit='changed'"):
        store.commit("t", rows([9], 90))
    assert 9 not in current(store)

    interleave(lambda: other.commit("t", rows([10, 11], 100)))
    result = store.commit("t", rows([10], 100))  # already done by the other writer
    assert not result.committed and result.commit_id == store.resolve("t").id
    assert store.log("t", limit=1)[0].changes == {"added": 0, "removed": 0, "changed": 2}

    interleave(lambda: other.commit("t", pa.table({"id": [12]}), mode="delete"))
    result = store.commit("t", pa.table({"id": [12, 13]}), mode="delete")
    assert result.counts == {"added": 0, "removed": 1, "changed": 0}
    assert 12 not in current(store) and 13 not in current(store)


def test_appends_of_the_same_new_key_conflict_unless_identical(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    interleave(lambda: other.commit("t", rows([5000, 5001], 1), mode="append"))
    with pytest.raises(
        MergeConflictError, match=r"\{'id': 5000\} x: base=None this commit=2 on the branch=1"
    ):
        store.commit("t", rows([5000], 2), mode="append")
    interleave(lambda: other.commit("t", rows([6000], 1), mode="append"))
    result = store.commit("t", rows([6000, 6001], 1), mode="append")
    assert result.counts["added"] == 1 and current(store)[6001] == {"x": 1, "y": "base"}


def test_a_column_added_meanwhile_is_kept_and_a_column_retyped_meanwhile_is_a_clear_error(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    wider = rows([1], 1).append_column("z", pa.array([0.5]))
    interleave(lambda: other.commit("t", wider, allow_new_columns=True))
    store.commit("t", rows([2, 3], 9))
    got = current(store)
    assert got[1] == {"x": 1, "y": "base", "z": 0.5} and got[2] == {"x": 9, "y": "base", "z": None}

    retyped = pa.table({"id": pa.array([4], pa.int64()), "x": pa.array([4.5]), "y": ["base"], "z": [1.0]})
    interleave(lambda: other.commit("t", retyped, allow_type_change=True))
    with pytest.raises(
        ConflictError, match=r"column\(s\) x \(int64 here, double on the branch\) changed type"
    ):
        store.commit("t", rows([5], 9).append_column("z", pa.array([1.0])))
    assert current(store)[5] == {"x": 0.0, "y": "base", "z": None}


def test_replace_is_prepared_again_under_the_lock_and_supersedes_what_landed_meanwhile(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    interleave(lambda: other.commit("t", rows([1, 7000], 5)))
    result = store.commit("t", rows([1, 2, 3], 3), mode="replace")
    assert result.rebases == 1 and result.committed
    assert current(store) == {i: {"x": 3, "y": "base"} for i in (1, 2, 3)}
    assert result.counts == {"added": 0, "removed": 998, "changed": 3}  # counted against the new head


def test_a_column_type_change_is_prepared_again_and_keeps_what_landed_meanwhile(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    interleave(lambda: other.commit("t", rows([1, 7000], 5)))
    retyped = pa.table({"id": pa.array([2], pa.int64()), "x": pa.array([2.5]), "y": ["ours"]})
    result = store.commit("t", retyped, allow_type_change=True)
    assert result.rebases == 1 and result.retyped_columns == ("x",)
    got = current(store)
    assert got[1] == {"x": 5.0, "y": "base"} and got[7000] == {"x": 5.0, "y": "base"}
    assert got[2] == {"x": 2.5, "y": "ours"} and len(got) == 1001


def test_a_compacting_commit_keeps_its_rewritten_buckets_when_only_pending_changes_landed(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    interleave(lambda: other.commit("t", rows([1, 8000], 4)))  # small: a pending change set
    result = store.commit("t", rows(list(range(100, 400)), 2))  # 30 %: rewrites its buckets
    assert result.rebases == 1 and result.rewritten_buckets == 8
    manifest = store.manifest(result.commit_id)
    assert len(manifest.deltas) == 1 and manifest.deltas[0] == store.manifest(store.log("t")[1].id).change
    got = current(store)
    assert got[1]["x"] == 4 and got[8000]["x"] == 4 and got[150]["x"] == 2 and len(got) == 1001

    interleave(lambda: other.commit("t", rows(list(range(400, 700)), 6)))  # compacts meanwhile
    result = store.commit("t", rows([1, 9000], 7))
    assert result.rebases == 1 and result.rewritten_buckets == 0
    got = current(store)
    assert got[1]["x"] == 7 and got[9000]["x"] == 7 and got[500]["x"] == 6 and got[150]["x"] == 2


def test_keys_are_looked_up_in_the_new_head_when_a_change_set_was_too_large_to_keep(
    store: TableStore, other: TableStore, interleave: Callable[[Callable[[], object]], None]
) -> None:
    big = list(range(0, 500))
    interleave(lambda: other.commit("t", rows(big, 1)))  # 50 % of the table: no change set kept
    with pytest.raises(MergeConflictError, match=r"\{'id': 3\} x: base=0 this commit=3 on the branch=1"):
        store.commit("t", rows([3, 600], 3))
    assert store.manifest(store.resolve("t").id).change is None
    interleave(lambda: other.commit("t", rows(list(range(500, 1000)), 2)))
    store.commit("t", rows([3, 5], 3))
    got = current(store)
    assert got[3]["x"] == 3 and got[5]["x"] == 3 and got[999]["x"] == 2 and got[4]["x"] == 1


def test_a_branch_moved_by_a_writer_without_the_lock_is_retried_with_backoff_then_given_up(
    store: TableStore, other: TableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Store._swap_branch
    racing = {"left": 1}
    counter = iter(range(10_000, 20_000))

    def move(self: Store, *args: Any) -> None:
        if self is store and racing["left"]:
            racing["left"] -= 1
            other.commit("t", rows([next(counter)], 1), rebase=False)  # lands first, unlocked
        return original(self, *args)

    monkeypatch.setattr(Store, "_swap_branch", move)
    result = store.commit("t", rows([1], 2))
    assert result.retries == 1 and result.rebases == 1 and current(store)[1]["x"] == 2

    monkeypatch.setattr(tables_module, "LAND_ATTEMPTS", 3)
    racing["left"] = 100
    head_rows = store.resolve("t").num_rows
    with pytest.raises(
        ConflictError, match=r"branch 'main' kept moving .* gave up after 3 attempts \(2 rebases\)"
    ):
        store.commit("t", rows([2], 2))
    assert current(store)[2]["x"] == 0 and store.resolve("t").num_rows == head_rows + 3


def test_threads_writing_disjoint_keys_all_land_with_nothing_lost_or_duplicated(
    store: TableStore, workspace: Workspace
) -> None:
    writers, commits, per_commit = 4, 6, 25
    errors: list[BaseException] = []
    results: list[int] = []

    def write(writer: int) -> None:
        own = TableStore(workspace) if writer % 2 else store  # shared and separate stores alike
        try:
            for i in range(commits):
                ids = [100_000 * (writer + 1) + per_commit * i + j for j in range(per_commit)]
                results.append(own.commit("t", rows(ids, writer), mode="append").rebases)
        except BaseException as exc:  # reported below with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    ids = store.checkout("t").column("id").to_pylist()
    expected = set(range(1000)) | {
        100_000 * (w + 1) + per_commit * i + j
        for w in range(writers)
        for i in range(commits)
        for j in range(per_commit)
    }
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert len(store.log("t")) == 2 + writers * commits and len(results) == writers * commits


def test_processes_writing_disjoint_keys_all_land_with_nothing_lost_or_duplicated(
    store: TableStore, workspace: Workspace
) -> None:
    writers, commits, per_commit = 3, 5, 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(workspace.root), str(w), str(commits), str(per_commit)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(1, writers + 1)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    ids = store.checkout("t").column("id").to_pylist()
    expected = set(range(1000)) | {
        1_000_000 * w + per_commit * i + j
        for w in range(1, writers + 1)
        for i in range(commits)
        for j in range(per_commit)
    }
    assert len(ids) == len(set(ids)) and set(ids) == expected
    landed = [tuple(map(int, line.split())) for out, _ in outputs for line in out.splitlines()]
    assert len(landed) == writers * commits
    assert all(retries == 0 for _, retries in landed)  # under the commit lock no swap is ever lost


def test_the_commit_lock_excludes_other_holders_times_out_clearly_and_dies_with_its_holder(
    workspace: Workspace,
) -> None:
    engine = workspace.engine
    with exclusive(engine, "table 't' branch 'main'", timeout=1):
        started = time.monotonic()
        failure = _contend(workspace, "table 't' branch 'main'", 0.2)
        assert time.monotonic() - started >= 0.2
        assert isinstance(failure, ConflictError)
        assert str(failure) == (
            "table 't' branch 'main': another writer held the commit lock for more than 0.2 s; "
            "it may be stuck: retry later, or find the process that holds it"
        )
        assert _contend(workspace, "table 't' branch 'dev'", 0.2) is None  # another branch, another lock
    assert _contend(workspace, "table 't' branch 'main'", 0.2) is None  # released
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from mlprod.workspace import Workspace\n"
            "from mlprod.meta.locks import exclusive\n"
            "ws = Workspace.open(sys.argv[1])\n"
            "with exclusive(ws.engine, 'held', timeout=5):\n"
            "    print('locked', flush=True); time.sleep(600)\n",
            str(workspace.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert "held: another writer held the commit lock" in str(_contend(workspace, "held", 0.1))
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        with exclusive(engine, "held", timeout=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


@pytest.mark.postgres
def test_concurrent_writers_on_postgres(
    tmp_path: Path, postgres_url: str, interleave: Callable[[Callable[[], object]], None]
) -> None:
    with Workspace.init(tmp_path / "pg", database_url=postgres_url) as ws:
        tables, other = TableStore(ws), TableStore(ws)
        tables.create("t", key=["id"], data=rows(list(range(1000)), 0), buckets=8)
        root = ws.root
        with exclusive(ws.engine, "table 't' branch 'main'", timeout=1):
            failure = _contend(ws, "table 't' branch 'main'", 0.2)
        assert "another writer held the commit lock for more than 0.2 s" in str(failure)
        assert _contend(ws, "table 't' branch 'main'", 0.2) is None  # released
        interleave(lambda: other.commit("t", rows([1], 1)))
        result = tables.commit("t", rows([2], 2))
        assert result.rebases == 1 and current(tables)[1]["x"] == 1 and current(tables)[2]["x"] == 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(w), "4", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (1, 2, 3)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    with Workspace.open(root) as ws:
        ids = TableStore(ws).checkout("t").column("id").to_pylist()
    expected = set(range(1000)) | {
        1_000_000 * w + 30 * i + j for w in (1, 2, 3) for i in range(4) for j in range(30)
    }
    assert len(ids) == len(set(ids)) and set(ids) == expected


def _contend(ws: Workspace, name: str, timeout: float) -> BaseException | None:
    """Try the lock from another thread (another database session); the error it got, if any."""
    failure: list[BaseException] = []

    def contend() -> None:
        try:
            with exclusive(ws.engine, name, timeout=timeout):
                pass
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=contend)
    thread.start()
    thread.join()
    return failure[0] if failure else None
