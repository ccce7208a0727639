"""A column a table does not have never widens it silently: every write path refuses it unless asked."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlprod.data import TableStore
from mlprod.data.merge import merge_branches
from mlprod.errors import InvalidInputError, NewColumnsError
from mlprod.workspace import Workspace

BASE = pa.table({"id": pa.array([1, 2], pa.int64()), "x": [1.0, 2.0]})


@pytest.fixture
def tables(workspace: Workspace) -> TableStore:
    store = TableStore(workspace)
    store.create("t", key=["id"], data=BASE, buckets=2)
    return store


def wide(ids: list[int], **extra: list[object]) -> pa.Table:
    table = pa.table({"id": pa.array(ids, pa.int64()), "x": [float(i) for i in ids]})
    for name, values in extra.items():
        table = table.append_column(name, pa.array(values))
    return table


@pytest.mark.parametrize("mode", ["append", "upsert", "replace"])
def test_a_commit_with_an_extra_column_is_refused_and_commits_nothing(tables: TableStore, mode: str) -> None:
    head = tables.resolve("t").id
    with pytest.raises(NewColumnsError) as caught:
        tables.commit("t", wide([3], note=["n"], score=[0.5]), mode=mode)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "table 't': incoming data has column(s) 'note', 'score' that the table does not have; nothing was "
        "committed. To add them to the table for good (existing rows read as null) pass "
        "allow_new_columns=True (--allow-new-columns); otherwise drop them from the data"
    )
    assert tables.resolve("t").id == head
    assert tables.checkout("t").column_names == ["id", "x"]


@pytest.mark.parametrize("mode", ["append", "upsert", "replace"])
def test_allow_new_columns_widens_the_table(tables: TableStore, mode: str) -> None:
    result = tables.commit("t", wide([3], note=["n"]), mode=mode, allow_new_columns=True)  # type: ignore[arg-type]
    assert result.committed and result.added_columns == ("note",)
    rows = tables.checkout("t").sort_by("id").to_pylist()
    assert rows[-1] == {"id": 3, "x": 3.0, "note": "n"}
    if mode != "replace":
        assert rows[0] == {"id": 1, "x": 1.0, "note": None}  # existing rows read as null
    assert tables.commit("t", wide([4], note=["m"]), mode="append").committed  # no longer new


def test_a_delete_never_widens_and_needs_no_option(tables: TableStore) -> None:
    result = tables.commit("t", wide([1], note=["ignored"]), mode="delete")
    assert result.counts["removed"] == 1 and tables.checkout("t").column_names == ["id", "x"]


def test_a_case_only_clash_stays_refused_even_when_new_columns_are_allowed(tables: TableStore) -> None:
    head = tables.resolve("t").id
    for allowed in (False, True):
        with pytest.raises(InvalidInputError, match="columns 'x' and 'X' differ only by case") as caught:
            tables.commit("t", wide([3], X=[9.0]), allow_new_columns=allowed)
        assert not isinstance(caught.value, NewColumnsError)
    assert tables.resolve("t").id == head


def test_a_merge_bringing_a_new_column_is_refused_unless_allowed(tables: TableStore) -> None:
    tables.branch("t", "extra")
    tables.commit("t", wide([2], note=["from branch"]), branch="extra", allow_new_columns=True)
    tables.commit("t", wide([5]), mode="append")  # main moved too: a three-way merge
    head = tables.resolve("t").id
    with pytest.raises(
        NewColumnsError,
        match=r"'extra' has column\(s\) 'note' that 'main' does not have; nothing was merged\. .*"
        r"allow_new_columns=True \(--allow-new-columns\)",
    ):
        merge_branches(tables, "t", "extra")
    assert tables.resolve("t").id == head
    merged = merge_branches(tables, "t", "extra", allow_new_columns=True)
    assert not merged.fast_forward
    assert tables.checkout("t").sort_by("id").column("note").to_pylist() == [None, "from branch", None]


def test_a_fast_forward_bringing_a_new_column_is_refused_unless_allowed(tables: TableStore) -> None:
    tables.branch("t", "extra")
    tables.commit("t", wide([3], note=["n"]), branch="extra", allow_new_columns=True)
    head = tables.resolve("t").id
    with pytest.raises(NewColumnsError, match="'extra' has column"):
        merge_branches(tables, "t", "extra")
    assert tables.resolve("t").id == head
    assert merge_branches(tables, "t", "extra", allow_new_columns=True).fast_forward
    assert "note" in tables.checkout("t").column_names


def test_a_merge_from_a_narrower_branch_needs_no_option(tables: TableStore) -> None:
    tables.branch("t", "narrow")
    tables.commit("t", wide([3], note=["n"]), allow_new_columns=True)
    tables.commit("t", wide([7]), branch="narrow", mode="append")
    merge_branches(tables, "t", "narrow")
    assert 7 in tables.checkout("t").column("id").to_pylist()


def test_the_quarantine_side_table_follows_an_allowed_widening(workspace: Workspace) -> None:
    store = TableStore(workspace)
    rng = np.random.default_rng(0)

    def batch(start: int, bad: int, **extra: str) -> pa.Table:
        values = rng.normal(20, 3, 400)
        values[0] = 1e6 if bad else values[0]
        rows = pa.table({"id": pa.array(range(start, start + 400), pa.int64()), "v": values})
        for name, value in extra.items():
            rows = rows.append_column(name, pa.array([value] * 400))
        return rows

    store.create("r", key=["id"], data=batch(0, 0), buckets=4)
    store.infer_expectations("r")
    store.commit("r", batch(1000, 1), mode="append", validation="quarantine")  # a narrow r.quarantine
    with pytest.raises(NewColumnsError):
        store.commit("r", batch(2000, 1, site="b"), mode="append", validation="quarantine")
    result = store.commit(
        "r", batch(2000, 1, site="b"), mode="append", validation="quarantine", allow_new_columns=True
    )
    assert result.added_columns == ("site",) and result.notes["quarantined"]["rows"] == 1
    held = store.checkout("r.quarantine").sort_by("id")
    assert held.column("id").to_pylist() == [1000, 2000]
    assert held.column("site").to_pylist() == [None, "b"]
