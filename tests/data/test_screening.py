"""Validation and poisoning checks on the way into a table: reject, quarantine, report."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlprod.data import TableStore
from mlprod.errors import InvalidInputError, ValidationFailedError
from mlprod.workspace import Workspace


def readings(ids: range, *, seed: int = 0, value: float | None = None, kind: str | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(ids)
    values = rng.normal(20, 3, n) if value is None else np.full(n, value)
    kinds = rng.choice(["a", "b"], n) if kind is None else np.array([kind] * n)
    late = (values + rng.normal(0, 1, n) > 21).astype(np.int64)
    return pa.table({"id": pa.array(list(ids), pa.int64()), "value": values, "kind": kinds, "late": late})


@pytest.fixture
def tables(workspace: Workspace) -> TableStore:
    store = TableStore(workspace)
    store.create("r", key=["id"], data=readings(range(2000)), label="late", buckets=8)
    store.infer_expectations("r")
    return store


def test_a_bad_batch_is_rejected_by_default_and_nothing_moves(tables: TableStore) -> None:
    head = tables.resolve("r").id
    batch = pa.concat_tables([readings(range(2000, 3000), seed=1), readings(range(3000, 3003), value=1e6)])
    with pytest.raises(ValidationFailedError, match="nothing was committed") as caught:
        tables.commit("r", batch, mode="append")
    violation = caught.value.report.violations[0]
    assert (violation.column, violation.check, violation.count) == ("value", "above_maximum", 3)
    assert tables.resolve("r").id == head


def test_quarantine_commits_the_good_rows_and_keeps_the_bad_ones(tables: TableStore) -> None:
    good = readings(range(2000, 3000), seed=1)
    bad = pa.concat_tables([readings(range(3000, 3002), value=1e6), readings(range(3002, 3003), kind="zzz")])
    result = tables.commit("r", pa.concat_tables([good, bad]), mode="append", validation="quarantine")
    assert result.counts["added"] == 1000
    assert result.notes["quarantined"]["rows"] == 3 and result.notes["quarantined"]["table"] == "r.quarantine"
    held = tables.checkout("r.quarantine").sort_by("id")
    assert held.column("id").to_pylist() == [3000, 3001, 3002]
    assert held.column("_violations").to_pylist() == ["value:above_maximum"] * 2 + ["kind:unknown_category"]
    assert set(held.column("_held_back_from").to_pylist()) == {result.commit_id}
    assert 3000 not in set(tables.checkout("r").column("id").to_pylist())


def test_a_batch_level_violation_cannot_be_quarantined(tables: TableStore) -> None:
    with pytest.raises(ValidationFailedError, match="no rows can be set aside"):
        tables.commit("r", readings(range(5000, 5010)), mode="append", validation="quarantine")  # row count
    corrections = tables.commit("r", readings(range(0, 10), seed=3), mode="upsert")  # any size for upserts
    assert corrections.counts["changed"] == 10


def test_validation_off_and_policies_without_expectations(tables: TableStore, workspace: Workspace) -> None:
    result = tables.commit("r", readings(range(3000, 3005), value=1e6), mode="append", validation="off")
    assert result.counts["added"] == 5
    other = TableStore(workspace)
    other.create("plain", key=["id"], data=readings(range(10)))
    with pytest.raises(InvalidInputError, match="has no expectations to validate against"):
        other.commit("plain", readings(range(10, 20)), mode="append", validation="reject")
    with pytest.raises(InvalidInputError, match="validation must be one of"):
        other.commit("plain", readings(range(10, 20)), validation="maybe")  # type: ignore[arg-type]


def test_expectations_are_stored_with_the_table_and_can_leave_columns_unbounded(tables: TableStore) -> None:
    stored = tables.expectations("r")
    assert stored is not None and stored.column("kind").categories == ("a", "b")
    tables.infer_expectations("r", unbounded=["kind"])
    relaxed = tables.expectations("r")
    assert relaxed is not None and relaxed.column("kind").categories is None
    with pytest.raises(InvalidInputError, match="no column"):
        tables.infer_expectations("r", unbounded=["nope"])
    tables.clear_expectations("r")
    assert tables.expectations("r") is None


def test_poisoning_checks_report_planted_rows_and_commit_everything(tables: TableStore) -> None:
    flood = readings(range(3000, 3400), value=20.5, kind="a")
    result = tables.commit(
        "r",
        pa.concat_tables([readings(range(2000, 2800), seed=2), flood]),
        mode="append",
        validation="off",
        checks=True,
    )
    report = result.notes["poisoning"]
    assert "duplicate_flood" in [f.check for f in report.flagged]
    assert result.counts["added"] == 1200  # reported, never dropped
    clean = tables.commit("r", readings(range(4000, 5000), seed=4), mode="append", checks=True)
    assert clean.notes["poisoning"].flagged == ()
