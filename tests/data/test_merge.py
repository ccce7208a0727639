"""Three-way merge: clean merges by cell, conflicts listed and resolved, nothing committed otherwise."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlprod.data import TableStore, merge_branches
from mlprod.data.merge import ROW, Conflict
from mlprod.errors import InvalidInputError, MergeConflictError
from mlprod.workspace import Workspace

Row = dict[str, Any]


def table_of(rows: dict[int, Row]) -> pa.Table:
    ids = sorted(rows)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "x": pa.array([rows[i]["x"] for i in ids], pa.int64()),
            "y": pa.array([rows[i]["y"] for i in ids], pa.string()),
        }
    )


def current(store: TableStore, ref: str = "main") -> dict[int, Row]:
    return {r.pop("id"): r for r in store.checkout("t", ref).to_pylist()}


@pytest.fixture
def store(workspace: Workspace) -> TableStore:
    tables = TableStore(workspace)
    base = {i: {"x": i, "y": "base"} for i in range(50)}
    tables.create("t", key=["id"], data=table_of(base), buckets=4)
    tables.branch("t", "fix")
    return tables


def test_changes_to_different_cells_and_rows_merge_cleanly(store: TableStore) -> None:
    store.commit(
        "t", table_of({1: {"x": 100, "y": "base"}, 2: {"x": 2, "y": "ours"}, 60: {"x": 60, "y": "new"}})
    )
    store.commit("t", table_of({1: {"x": 1, "y": "theirs"}, 3: {"x": 300, "y": "base"}}), branch="fix")
    store.commit("t", pa.table({"id": [4]}), mode="delete", branch="fix")
    store.commit("t", table_of({2: {"x": 2, "y": "ours"}}), branch="fix")  # same change on both sides
    head = store.resolve("t").id
    result = merge_branches(store, "t", "fix")
    rows = current(store)
    assert rows[1] == {"x": 100, "y": "theirs"} and rows[2] == {"x": 2, "y": "ours"}
    assert rows[3] == {"x": 300, "y": "base"} and 4 not in rows and rows[60] == {"x": 60, "y": "new"}
    merge = store.log("t", limit=1)[0]
    assert merge.parents == (head, store.resolve("t", "fix").id) and merge.operation == "merge"
    assert result.commit.counts == {"added": 0, "removed": 1, "changed": 2}
    assert not result.fast_forward and result.resolved_conflicts == 0


def conflicting(store: TableStore) -> None:
    store.commit("t", table_of({1: {"x": 10, "y": "base"}, 2: {"x": 2, "y": "ours"}}))
    store.commit("t", table_of({1: {"x": 11, "y": "base"}, 5: {"x": 5, "y": "theirs"}}), branch="fix")
    store.commit("t", pa.table({"id": [2]}), mode="delete", branch="fix")


def test_conflicts_are_listed_and_nothing_is_committed(store: TableStore) -> None:
    conflicting(store)
    head = store.resolve("t").id
    with pytest.raises(MergeConflictError, match=r"has 2 conflict\(s\), nothing was committed") as caught:
        merge_branches(store, "t", "fix")
    conflicts = caught.value.conflicts
    assert Conflict({"id": 1}, "x", 1, 10, 11) in conflicts
    assert Conflict({"id": 2}, ROW, "present", "changed", "deleted") in conflicts
    assert store.resolve("t").id == head


@pytest.mark.parametrize(
    ("policy", "x1", "row2"), [("ours", 10, {"x": 2, "y": "ours"}), ("theirs", 11, None)]
)
def test_conflicts_resolved_by_policy(store: TableStore, policy: str, x1: int, row2: Row | None) -> None:
    conflicting(store)
    result = merge_branches(store, "t", "fix", policy=policy)  # type: ignore[arg-type]
    rows = current(store)
    assert rows[1]["x"] == x1 and rows.get(2) == row2 and rows[5] == {"x": 5, "y": "theirs"}
    assert result.resolved_conflicts == 2


def test_conflicts_resolved_by_supplied_rows(store: TableStore) -> None:
    conflicting(store)
    with pytest.raises(MergeConflictError, match=r"1 conflict\(s\)"):
        merge_branches(store, "t", "fix", resolved=table_of({1: {"x": 12, "y": "agreed"}}))
    with pytest.raises(InvalidInputError, match=r"1 key\(s\) have no conflict"):
        merge_branches(store, "t", "fix", resolved=table_of({7: {"x": 0, "y": ""}}))
    resolved = table_of({1: {"x": 12, "y": "agreed"}, 2: {"x": 20, "y": "agreed"}})
    merge_branches(store, "t", "fix", resolved=resolved.to_pandas())
    rows = current(store)
    assert rows[1] == {"x": 12, "y": "agreed"} and rows[2] == {"x": 20, "y": "agreed"}


def test_fast_forward_and_already_merged(store: TableStore) -> None:
    store.commit("t", table_of({1: {"x": 7, "y": "fix"}}), branch="fix")
    result = merge_branches(store, "t", "fix")
    assert result.fast_forward and store.resolve("t").id == store.resolve("t", "fix").id
    again = merge_branches(store, "t", "fix")
    assert not again.commit.committed
    with pytest.raises(InvalidInputError, match="merge policy"):
        merge_branches(store, "t", "fix", policy="mine")  # type: ignore[arg-type]


values = st.fixed_dictionaries({"x": st.sampled_from([0, 1, 2]), "y": st.sampled_from(["a", "b"])})
edits = st.dictionaries(st.integers(0, 15), st.one_of(st.none(), values), max_size=8)


def edit(store: TableStore, branch: str, model: dict[int, Row], changes: dict[int, Row | None]) -> None:
    upserts = {k: v for k, v in changes.items() if v is not None}
    deletes = [k for k, v in changes.items() if v is None and k in model]
    if upserts:
        store.commit("t", table_of(upserts), branch=branch)
        model.update(upserts)
    if deletes:
        store.commit("t", pa.table({"id": pa.array(deletes, pa.int64())}), mode="delete", branch=branch)
        for k in deletes:
            del model[k]


def three_way(
    base: dict[int, Row], ours: dict[int, Row], theirs: dict[int, Row]
) -> tuple[dict[int, Row], int]:
    """The reference merge with policy "ours", and how many conflicting keys it met."""
    merged: dict[int, Row] = {}
    conflicted = 0
    for k in set(base) | set(ours) | set(theirs):
        b, o, t = base.get(k), ours.get(k), theirs.get(k)
        if o == t:
            result = o
        elif o == b:
            result = t
        elif t == b:
            result = o
        elif o is None or t is None:
            conflicted += 1
            result = o
        else:
            row = {}
            for c in ("x", "y"):
                bc = None if b is None else b[c]
                if o[c] == t[c] or t[c] == bc:
                    row[c] = o[c]
                elif o[c] == bc:
                    row[c] = t[c]
                else:
                    row[c] = o[c]
            conflicted += any(
                o[c] != t[c]
                and o[c] != (None if b is None else b[c])
                and t[c] != (None if b is None else b[c])
                for c in ("x", "y")
            )
            result = row
        if result is not None:
            merged[k] = result
    return merged, conflicted


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ours=edits, theirs=edits)
def test_merge_matches_a_reference_three_way_merge(
    tmp_path_factory: pytest.TempPathFactory, ours: dict[int, Row | None], theirs: dict[int, Row | None]
) -> None:
    with Workspace.init(tmp_path_factory.mktemp("ws")) as ws:
        store = TableStore(ws)
        base = {i: {"x": 0, "y": "a"} for i in range(10)}
        store.create("t", key=["id"], data=table_of(base), buckets=4)
        store.branch("t", "fix")
        models = {"main": dict(base), "fix": dict(base)}
        edit(store, "main", models["main"], ours)
        edit(store, "fix", models["fix"], theirs)
        expected, conflicted = three_way(base, models["main"], models["fix"])
        head = store.resolve("t").id
        if conflicted:
            with pytest.raises(MergeConflictError):
                merge_branches(store, "t", "fix")
            assert store.resolve("t").id == head
        result = merge_branches(store, "t", "fix", policy="ours")
        assert current(store) == expected
        assert result.resolved_conflicts == conflicted
