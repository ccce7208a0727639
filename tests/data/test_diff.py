"""Keyed diff: both ways of computing it agree with a brute-force comparison, and it reads little."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlprod.data import TableStore, diff_versions
from mlprod.errors import InvalidInputError
from mlprod.workspace import Workspace

N = 200
Row = dict[str, Any]


def table_of(rows: dict[int, Row]) -> pa.Table:
    ids = sorted(rows)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "x": pa.array([rows[i]["x"] for i in ids], pa.float64()),
            "y": pa.array([rows[i]["y"] for i in ids], pa.string()),
        }
    )


def base_rows() -> dict[int, Row]:
    rng = np.random.default_rng(1)
    return {i: {"x": float(rng.integers(0, 5)), "y": str(rng.choice(["a", "b"]))} for i in range(N)}


values = st.fixed_dictionaries(
    {
        "x": st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5, float("nan")])),
        "y": st.sampled_from([None, "a", "z"]),
    }
)
operation = st.tuples(
    st.sampled_from(["upsert", "delete"]),
    st.dictionaries(st.integers(0, N + 20), values, min_size=1, max_size=12),
)


def apply(store: TableStore, model: dict[int, Row], branch: str, op: tuple[str, dict[int, Row]]) -> None:
    mode, rows = op
    if mode == "delete":
        rows = {k: v for k, v in rows.items() if k in model}
        if not rows:
            return
        store.commit("t", pa.table({"id": pa.array(sorted(rows), pa.int64())}), mode="delete", branch=branch)
        for k in rows:
            del model[k]
    else:
        store.commit("t", table_of(rows), mode="upsert", branch=branch)
        model.update(rows)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return bool(a == b)


def brute_force(old: dict[int, Row], new: dict[int, Row]) -> tuple[set[int], set[int], set[tuple[int, str]]]:
    added = set(new) - set(old)
    removed = set(old) - set(new)
    cells = {(k, c) for k in set(old) & set(new) for c in ("x", "y") if not same(old[k][c], new[k][c])}
    return added, removed, cells


def observed(d: Any) -> tuple[set[int], set[int], set[tuple[int, str]]]:
    cells = d.cells().to_pydict()
    return (
        set(d.added.column("id").to_pylist()),
        set(d.removed.column("id").to_pylist()),
        set(zip(cells["id"], cells["column"], strict=True)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ours=st.lists(operation, max_size=4), theirs=st.lists(operation, max_size=4))
def test_diff_matches_brute_force_both_ways(
    tmp_path_factory: pytest.TempPathFactory, ours: list[Any], theirs: list[Any]
) -> None:
    with Workspace.init(tmp_path_factory.mktemp("ws")) as ws:
        store = TableStore(ws)
        model = base_rows()
        store.create("t", key=["id"], data=table_of(model), buckets=8)
        store.branch("t", "other")
        models = {"main": dict(model), "other": dict(model)}
        for op in ours:
            apply(store, models["main"], "main", op)
        for op in theirs:
            apply(store, models["other"], "other", op)
        expected = brute_force(models["other"], models["main"])
        for method in ("auto", "change sets", "buckets"):
            d = diff_versions(store, "t", "other", "main", method=method)  # type: ignore[arg-type]
            assert observed(d) == expected, method
            summary = d.summary()
            assert (summary["added"], summary["removed"]) == (len(expected[0]), len(expected[1]))


def test_diff_of_a_small_change_reads_only_the_change(workspace: Workspace) -> None:
    store = TableStore(workspace)
    n = 50_000
    store.create("t", key=["id"], data=table_of({i: {"x": float(i), "y": "a"} for i in range(n)}), buckets=32)
    store.tag("t", "before")
    store.commit("t", table_of({i: {"x": -1.0, "y": "b"} for i in range(0, n, 500)}))
    d = diff_versions(store, "t", "before", "main")
    assert d.method == "change sets" and d.rows_read == 100
    assert d.summary() == {"added": 0, "removed": 0, "changed": 100, "cells": {"x": 100, "y": 100}}
    changed = d.changed.sort_by("id").slice(1, 1).to_pylist()
    assert changed == [{"id": 500, "before.x": 500.0, "before.y": "a", "after.x": -1.0, "after.y": "b"}]
    by_buckets = diff_versions(store, "t", "before", "main", method="buckets")
    assert (
        by_buckets.rows_read > 0.9 * 2 * n
    )  # nearly every bucket has a changed row: the slow way reads them
    assert by_buckets.change.sort_by("id").equals(d.change.sort_by("id"))


def test_diff_across_added_columns_and_of_a_version_with_itself(workspace: Workspace) -> None:
    store = TableStore(workspace)
    store.create("t", key=["id"], data=table_of({1: {"x": 1.0, "y": "a"}, 2: {"x": 2.0, "y": "b"}}))
    store.tag("t", "v1")
    store.commit(
        "t", table_of({1: {"x": 1.0, "y": "a"}}).append_column("z", pa.array([7])), allow_new_columns=True
    )
    d = diff_versions(store, "t", "v1", "main")
    assert d.cells().to_pylist() == [{"id": 1, "column": "z", "old": None, "new": "7"}]
    assert diff_versions(store, "t", "main", "main").summary()["changed"] == 0
    with pytest.raises(InvalidInputError, match="diff method"):
        diff_versions(store, "t", "v1", "main", method="fast")  # type: ignore[arg-type]


def test_diff_across_a_type_change(workspace: Workspace) -> None:
    store = TableStore(workspace)
    store.create("t", key=["id"], data=pa.table({"id": [1, 2], "x": ["a", "b"]}))
    store.tag("t", "v1")
    store.commit("t", pa.table({"id": [1, 2], "x": [1.5, 2.5]}), allow_type_change=True)
    forward = diff_versions(store, "t", "v1", "main")  # "a" has no float form: compared as text
    assert forward.schema.field("x").type == pa.large_string()
    cells = forward.cells().to_pylist()
    assert [(c["old"], c["new"]) for c in cells] in (
        [("a", "1.5"), ("b", "2.5")],
        [("b", "2.5"), ("a", "1.5")],
    )
    assert store.checkout("t").sort_by("id").column("x").to_pylist() == [1.5, 2.5]
    assert store.log("t", limit=1)[0].changes == {"added": 0, "removed": 0, "changed": 2}
    store.tag("t", "v2")
    store.commit("t", pa.table({"id": [1], "x": ["text again"]}), allow_type_change=True)
    back = diff_versions(store, "t", "v2", "main")  # floats as text are exact: compared as the new type
    assert back.schema.field("x").type == pa.string()
    assert back.cells().to_pylist() == [{"id": 1, "column": "x", "old": "1.5", "new": "text again"}]
    assert back.summary()["changed"] == 1  # row 2's 2.5 became "2.5": the same value as text
    store.create("w", key=["id"], data=pa.table({"id": [1, 2], "x": [1, 2]}))
    store.tag("w", "ints")
    store.commit("w", pa.table({"id": [1, 2], "x": [1.0, 2.5]}), allow_type_change=True)
    widened = diff_versions(store, "w", "ints", "main")  # 1 -> 1.0 is no change, only 2 -> 2.5 is
    assert widened.schema.field("x").type == pa.float64()
    assert widened.cells().to_pylist() == [{"id": 2, "column": "x", "old": "2", "new": "2.5"}]
