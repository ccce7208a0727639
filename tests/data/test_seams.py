"""Where gc safety, rebasing writers and lossless casts meet: each test is a bug found at a seam."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from mlprod.data import TableStore
from mlprod.data import tables as tables_module
from mlprod.data.gc_fence import KeptWrites
from mlprod.data.merge import merge_branches
from mlprod.data.tables import TableStore as Store
from mlprod.errors import ConflictError, InvalidInputError
from mlprod.workspace import Workspace


@pytest.fixture
def store(workspace: Workspace) -> TableStore:
    tables = TableStore(workspace)
    tables.create("t", key=["id"], data=pa.table({"id": list(range(10)), "v": [1.0] * 10}), buckets=4)
    return tables


def test_a_rebase_never_lands_a_column_whose_name_clashes_with_one_that_landed_meanwhile(
    store: TableStore, workspace: Workspace, interleave: Callable[[Callable[[], object]], None]
) -> None:
    other = TableStore(workspace)
    added = pa.table({"id": [5], "v": [1.0], "price": [9.5]})  # both writers ask for the new column
    interleave(lambda: other.commit("t", added, allow_new_columns=True))
    with pytest.raises(
        ConflictError, match=r"columns 'Price' and 'price', one added by this commit .* nothing"
    ):
        store.commit("t", pa.table({"id": [7], "v": [2.0], "Price": [3.0]}), allow_new_columns=True)
    assert store.checkout("t").column_names == ["id", "v", "price"]
    assert store.commit("t", pa.table({"id": [8], "v": [2.0], "price": [1.0]})).committed


def test_a_commit_waits_for_a_running_gc_sweep_outside_the_branch_lock(
    store: TableStore, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers start while a sweep runs: neither may hold the branch lock while waiting for it,
    so neither times out on the lock (which used to say the other 'may be stuck')."""
    monkeypatch.setattr(tables_module, "LOCK_TIMEOUT_SECONDS", 1.0)
    outcomes: dict[int, object] = {}

    def write(key: int) -> None:
        try:
            outcomes[key] = TableStore(workspace).commit("t", pa.table({"id": [key], "v": [2.0]})).committed
        except Exception as exc:  # recorded and asserted below
            outcomes[key] = exc

    sweep = store.fence.sweep("a slow gc")
    writers = [threading.Thread(target=write, args=(key,)) for key in (100, 101)]
    for writer in writers:
        writer.start()
    time.sleep(2.5)  # longer than the lock timeout
    sweep.end()
    for writer in writers:
        writer.join(30)
    assert outcomes == {100: True, 101: True}
    assert {100, 101} <= set(store.checkout("t").column("id").to_pylist())


def test_resolved_rows_of_a_merge_are_cast_losslessly(store: TableStore) -> None:
    store.create("f", key=["id"], data=pa.table({"id": [1, 2], "v": pa.array([0.5, 0.25], pa.float32())}))
    store.branch("f", "b")
    store.commit("f", pa.table({"id": [1], "v": pa.array([0.75], pa.float32())}))
    store.commit("f", pa.table({"id": [1], "v": pa.array([1.5], pa.float32())}), branch="b")
    head = store.resolve("f").id
    with pytest.raises(InvalidInputError, match=r"resolved rows for table 'f': column 'v' .* 0\.1 ->"):
        merge_branches(store, "f", "b", resolved=pa.table({"id": [1], "v": [0.1]}))
    assert store.resolve("f").id == head
    merged = merge_branches(store, "f", "b", resolved=pa.table({"id": [1], "v": [0.125]}))
    assert merged.commit.committed
    assert store.checkout("f").sort_by("id").column("v").to_pylist() == [0.125, 0.25]


def test_two_commits_quarantining_at_once_both_land_and_both_keep_their_bad_rows(
    workspace: Workspace,
) -> None:
    tables = TableStore(workspace)
    tables.create("q", key=["id"], data=pa.table({"id": list(range(100)), "v": [1.0] * 100}))
    tables.infer_expectations("q")
    barrier = threading.Barrier(2)
    outcomes: dict[int, object] = {}
    original = Store._quarantine

    def quarantine(self: Store, *args: Any, **kwargs: Any) -> Any:
        barrier.wait(10)  # both reach the side table's creation together
        return original(self, *args, **kwargs)

    def write(writer: int) -> None:
        good, bad = 1000 + writer, 2000 + writer
        batch = pa.table({"id": [good, bad], "v": [1.0, None]})
        try:
            result = TableStore(workspace).commit("q", batch, validation="quarantine")
            outcomes[writer] = result.notes["quarantined"]["rows"]
        except Exception as exc:  # recorded and asserted below
            outcomes[writer] = exc

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "_quarantine", quarantine)
        writers = [threading.Thread(target=write, args=(w,)) for w in (1, 2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
    assert outcomes == {1: 1, 2: 1}
    held = tables.checkout("q.quarantine")
    assert held.num_rows == 2


def test_kept_writes_count_each_object_once_against_their_budget(workspace: Workspace) -> None:
    kept = KeptWrites(TableStore(workspace).objects, budget=10)
    for _ in range(3):
        kept.put_bytes(b"12345")  # the same object put again (a re-prepared commit)
    other = kept.put_bytes(b"abcde")
    assert other in kept.kept and len(kept.kept) == 2
