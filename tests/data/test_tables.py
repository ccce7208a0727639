"""Versioned tables: commits in every mode, checkout of any version, refs, schema evolution, errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlprod.data import TableStore
from mlprod.errors import (
    AlreadyExistsError,
    ArtifactCorruptedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from mlprod.workspace import Workspace


def people(ids: list[int], age: list[float] | None = None, city: list[str] | None = None) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "age": pa.array(age if age is not None else [float(i) for i in ids], pa.float64()),
            "city": pa.array(city if city is not None else [f"c{i % 3}" for i in ids], pa.string()),
        }
    )


@pytest.fixture
def tables(workspace: Workspace) -> TableStore:
    store = TableStore(workspace)
    store.create("people", key=["id"], data=people(list(range(100))), buckets=8)
    return store


def rows(table: pa.Table) -> list[dict[str, object]]:
    return table.sort_by("id").to_pylist()


def test_create_commits_the_first_rows_on_main(tables: TableStore) -> None:
    log = tables.log("people")
    assert [c.operation for c in log] == ["append", "create"]
    assert log[0].changes == {"added": 100, "removed": 0, "changed": 0}
    assert tables.checkout("people").num_rows == 100
    assert tables.info("people").key == ("id",)


def test_every_commit_mode(tables: TableStore) -> None:
    appended = tables.commit("people", people([100, 101]), mode="append", message="two more")
    assert appended.counts == {"added": 2, "removed": 0, "changed": 0}
    upserted = tables.commit("people", people([1, 200], age=[99.0, 5.0]), mode="upsert")
    assert upserted.counts == {"added": 1, "removed": 0, "changed": 1}
    deleted = tables.commit("people", pa.table({"id": [2, 3]}), mode="delete")
    assert deleted.counts == {"added": 0, "removed": 2, "changed": 0}
    current = {r["id"]: r for r in rows(tables.checkout("people"))}
    assert len(current) == 100 + 2 + 1 - 2
    assert current[1]["age"] == 99.0 and 2 not in current and current[200]["age"] == 5.0
    replaced = tables.commit("people", people([1, 7, 500]), mode="replace")
    assert rows(tables.checkout("people")) == rows(people([1, 7, 500]))
    assert replaced.counts == {"added": 1, "removed": 99, "changed": 1}
    assert tables.resolve("people").num_rows == 3


def test_identical_rows_commit_nothing(tables: TableStore) -> None:
    head = tables.resolve("people").id
    result = tables.commit("people", people([5, 6]), mode="upsert")
    assert not result.committed and result.commit_id == head
    assert tables.resolve("people").id == head


def test_append_of_an_existing_key_is_refused_and_nothing_moves(tables: TableStore) -> None:
    head = tables.resolve("people").id
    with pytest.raises(
        InvalidInputError, match=r"1 key\(s\) already exist, e.g. \{'id': 5\}; use mode upsert"
    ):
        tables.commit("people", people([5, 1000]), mode="append")
    assert tables.resolve("people").id == head


def test_delete_of_a_missing_key_is_refused(tables: TableStore) -> None:
    with pytest.raises(InvalidInputError, match=r"1 key\(s\) to delete do not exist, e.g. \{'id': 999\}"):
        tables.commit("people", pa.table({"id": [1, 999]}), mode="delete")
    assert tables.checkout("people").num_rows == 100


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (pa.table({"age": [1.0], "city": ["x"]}), r"key column\(s\) id missing"),
        (
            pa.table({"id": pa.array([1, None], pa.int64()), "age": [1.0, 2.0], "city": ["x", "y"]}),
            "1 missing",
        ),
        (people([4, 4]), r"1 key\(s\) appear more than once, e.g. \{'id': 4\}"),
        (pa.table({"id": [1], "age": [1.0]}), r"lacks column\(s\) city"),
        (
            people([1]).set_column(1, "age", pa.array(["old"])),
            "column 'age' is double but the incoming data has string",
        ),
        (pa.table({"id": [1.5], "age": [1.0], "city": ["x"]}), "key column 'id' has type double"),
    ],
    ids=["no-key", "null-key", "duplicate-key", "missing-column", "type-change", "float-key"],
)
def test_bad_batches_name_the_problem_and_commit_nothing(
    tables: TableStore, batch: pa.Table, message: str
) -> None:
    head = tables.resolve("people").id
    objects = set(tables.objects)
    with pytest.raises(InvalidInputError, match=message):
        tables.commit("people", batch, mode="upsert")
    assert tables.resolve("people").id == head
    assert set(tables.objects) == objects


def test_unknown_things_are_named(tables: TableStore) -> None:
    with pytest.raises(NotFoundError, match=r"table 'nope' not found \(tables: people\)"):
        tables.checkout("nope")
    with pytest.raises(NotFoundError, match="table 'people' has no branch, tag or commit 'dev'"):
        tables.checkout("people", "dev")
    with pytest.raises(NotFoundError, match="has no branch, tag or commit 'abcdef12'"):
        tables.checkout("people", "abcdef12")
    with pytest.raises(NotFoundError, match=r"'dev' is not a branch \(branches: main\)"):
        tables.commit("people", people([1]), branch="dev")
    tables.tag("people", "v1")
    with pytest.raises(NotFoundError, match="'v1' is a tag, not a branch"):
        tables.commit("people", people([1]), branch="v1")
    with pytest.raises(AlreadyExistsError, match="table 'people' already exists"):
        tables.create("people", key=["id"])
    with pytest.raises(AlreadyExistsError, match="already has a tag named 'v1'"):
        tables.branch("people", "v1")


def test_checkout_of_commits_branches_tags_and_times(tables: TableStore) -> None:
    first = tables.resolve("people")
    tables.tag("people", "v1")
    tables.branch("people", "dev")
    time_between = datetime.now(UTC)
    tables.commit("people", people([1], age=[50.0]), branch="dev")
    tables.commit("people", people([2], age=[60.0]))
    assert rows(tables.checkout("people", "v1")) == rows(people(list(range(100))))
    assert rows(tables.checkout("people", first.id[:8])) == rows(tables.checkout("people", "v1"))
    assert tables.checkout("people", "dev").to_pandas().set_index("id").loc[1, "age"] == 50.0
    assert tables.checkout("people").to_pandas().set_index("id").loc[[1, 2], "age"].tolist() == [1.0, 60.0]
    assert tables.resolve("people", as_of=time_between).id == first.id
    assert rows(tables.checkout("people", as_of=time_between)) == rows(tables.checkout("people", "v1"))
    with pytest.raises(NotFoundError, match="did not exist yet"):
        tables.resolve("people", as_of=time_between - timedelta(days=1))
    assert tables.checkout_pandas("people").shape == (100, 3)
    relation = tables.checkout_duckdb("people", "dev", connection=duckdb.connect())
    assert relation.filter("id = 1").fetchall() == [(1, 50.0, "c1")]


def test_sources_pandas_parquet_csv_and_a_csv_that_does_not_parse(tables: TableStore, tmp_path: Path) -> None:
    tables.commit("people", people([300]).to_pandas(), mode="append")
    pq.write_table(people([301]), tmp_path / "rows.parquet")
    tables.commit("people", tmp_path / "rows.parquet", mode="append")
    (tmp_path / "rows.csv").write_text("id,age,city\n302,3,x\n")
    tables.commit("people", str(tmp_path / "rows.csv"), mode="append")
    assert {300, 301, 302} <= set(tables.checkout("people").column("id").to_pylist())
    (tmp_path / "bad.csv").write_text("id,age,city\n1,2\n")
    with pytest.raises(InvalidInputError, match=r"cannot read .*bad.csv: .*Expected 3 columns, got 2"):
        tables.commit("people", tmp_path / "bad.csv")
    with pytest.raises(InvalidInputError, match="cannot commit a list"):
        tables.commit("people", [1, 2])


def test_schema_evolution_adds_nullable_columns_and_refuses_silent_type_changes(tables: TableStore) -> None:
    wider = people([1, 500]).append_column("email", pa.array(["a@x", "b@x"]))
    result = tables.commit("people", wider, mode="upsert", allow_new_columns=True)
    assert result.added_columns == ("email",)
    current = tables.checkout("people").to_pandas().set_index("id")
    assert current.loc[1, "email"] == "a@x" and pd.isna(current.loc[2, "email"])
    as_int = pa.table({"id": [600], "age": pa.array([7], pa.int32()), "city": ["x"], "email": [None]})
    tables.commit("people", as_int, mode="append")  # lossless cast into double
    text_age = people([3]).set_column(1, "age", pa.array(["three"])).append_column("email", pa.array(["e"]))
    with pytest.raises(InvalidInputError, match="pass allow_type_change=True"):
        tables.commit("people", text_age)
    changed = tables.commit("people", text_age, allow_type_change=True)
    assert changed.retyped_columns == ("age",)
    schema = tables.manifest(changed.commit_id).schema
    assert schema is not None and schema.field("age").type == pa.string()
    assert tables.checkout("people").to_pandas().set_index("id").loc[3, "age"] == "three"


def test_a_one_row_upsert_writes_only_its_change_and_buckets_are_shared(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    n = 100_000
    ages = np.random.default_rng(0).normal(40, 10, n).tolist()
    tables.create("big", key=["id"], data=people(list(range(n)), age=ages), buckets=16)
    before = tables.manifest(tables.resolve("big").id)
    objects = {sha: tables.objects.path_of(sha).stat().st_size for sha in tables.objects}
    tables.commit("big", people([7], age=[-1.0]))
    after = tables.manifest(tables.resolve("big").id)
    new = {sha: tables.objects.path_of(sha).stat().st_size for sha in tables.objects if sha not in objects}
    assert after.buckets == before.buckets  # nothing rewritten: the change set is applied on read
    assert len(new) == 2  # the change set and the manifest
    assert sum(new.values()) < 0.01 * sum(objects.values())


def test_compaction_rewrites_only_touched_buckets(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    tables.create("big", key=["id"], data=people(list(range(10_000))), buckets=64)
    before = tables.manifest(tables.resolve("big").id)
    result = tables.commit("big", people(list(range(1_500)), age=[0.5] * 1_500))  # over the 10 % threshold
    after = tables.manifest(result.commit_id)
    assert after.deltas == () and result.rewritten_buckets == 64
    small = tables.commit("big", people([1], age=[2.0]))
    many = tables.commit("big", people(list(range(2, 1_100)), age=[3.0] * 1_098))
    assert small.rewritten_buckets == 0 and 0 < many.rewritten_buckets <= 64
    compacted = tables.manifest(many.commit_id)
    assert compacted.deltas == ()
    shared = sum(a == b for a, b in zip(compacted.buckets, before.buckets, strict=True))
    assert shared == 0  # every bucket had a changed row...
    again = tables.commit("big", people([5_000], age=[9.0] * 1))
    assert tables.manifest(again.commit_id).buckets == compacted.buckets  # ...and now none is rewritten
    expected = {
        i: 3.0 if 2 <= i < 1_100 else (2.0 if i == 1 else (0.5 if i < 1_500 else float(i)))
        for i in range(10_000)
    }
    expected[5_000] = 9.0
    got = dict(zip(*tables.checkout("big").select(["id", "age"]).to_pydict().values(), strict=True))
    assert got == expected


def test_a_stale_writer_loses_the_compare_and_swap(tables: TableStore) -> None:
    info = tables.info("people")
    head = tables.resolve("people").id
    parent = tables.manifest(head)
    tables.commit("people", people([1], age=[11.0]))
    moved_to = tables.resolve("people").id
    change = tables.commit  # a second writer that read the old head
    from mlprod.data.changes import compare

    schema = parent.schema
    assert schema is not None
    stale = compare(people([2]), people([2], age=[22.0]), info.key, schema, info.buckets)
    with pytest.raises(ConflictError, match=f"branch 'main' moved from {head[:12]} to {moved_to[:12]}"):
        tables.commit_change(
            info,
            branch="main",
            parent=parent,
            parent_id=head,
            change=stale,
            schema=schema,
            operation="upsert",
            message="",
        )
    assert change is not None
    assert tables.resolve("people").id == moved_to
    assert tables.checkout("people").to_pandas().set_index("id").loc[2, "age"] == 2.0


def test_a_tampered_bucket_is_named_and_nothing_is_returned(tables: TableStore) -> None:
    manifest = tables.manifest(tables.resolve("people").id)
    victim = next(sha for sha in manifest.buckets if sha)
    path = tables.objects.path_of(victim)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptedError, match=f"artifact {victim} at .* is corrupted"):
        tables.checkout("people")


def test_branches_are_listed_and_deleted_but_main_stays(tables: TableStore) -> None:
    tables.branch("people", "dev")
    assert [(r.name, r.kind) for r in tables.refs("people")] == [("dev", "branch"), ("main", "branch")]
    tables.delete_branch("people", "dev")
    with pytest.raises(InvalidInputError, match="'main' branch cannot be deleted"):
        tables.delete_branch("people", "main")
    with pytest.raises(InvalidInputError, match="branch name"):
        tables.branch("people", "../x")


def test_multi_column_keys(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    data = pa.table({"day": ["d1", "d1", "d2"], "n": [1, 2, 1], "v": [1.0, 2.0, 3.0]})
    tables.create("m", key=["day", "n"], data=data, buckets=4)
    tables.commit("m", pa.table({"day": ["d1"], "n": [2], "v": [20.0]}))
    got = tables.checkout("m").sort_by([("day", "ascending"), ("n", "ascending")]).column("v").to_pylist()
    assert got == [1.0, 20.0, 3.0]


def test_stable_bucket_ids() -> None:
    from mlprod.data.keys import bucket_ids

    ids = bucket_ids(pa.table({"k": np.arange(5)}), ["k"], 1024).tolist()
    assert ids == bucket_ids(pa.table({"k": pa.array(range(5), pa.int16())}), ["k"], 1024).tolist()
    assert ids == [int(x) for x in ids] and len(set(ids)) == 5


def test_a_refused_first_batch_creates_no_table(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    with pytest.raises(InvalidInputError, match="appear more than once"):
        tables.create("dup", key=["id"], data=people([1, 1]))
    assert tables.tables() == []
    tables.create("dup", key=["id"], data=people([1, 2]))  # the retry works
    assert tables.checkout("dup").num_rows == 2


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pa.array([[1], [2]]), "nested type list"),
        (pa.array([{"a": 1}, {"a": 2}]), "nested type struct"),
    ],
)
def test_nested_columns_are_refused_clearly(workspace: Workspace, column: pa.Array, message: str) -> None:
    tables = TableStore(workspace)
    with pytest.raises(InvalidInputError, match=message):
        tables.create("n", key=["id"], data=pa.table({"id": [1, 2], "v": column}))
    assert tables.tables() == []


def test_reserved_column_names_and_categorical_keys(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    with pytest.raises(InvalidInputError, match="column name '_bucket' is reserved"):
        tables.create("r", key=["_bucket"], data=pa.table({"_bucket": [1, 2], "x": [1, 2]}))
    frame = pd.DataFrame({"code": pd.Categorical(["a", "b"]), "x": [1.0, 2.0]})
    tables.create("c", key=["code"], data=frame)
    tables.commit("c", pd.DataFrame({"code": pd.Categorical(["b"]), "x": [3.0]}))
    assert tables.checkout("c").sort_by("code").to_pylist() == [
        {"code": "a", "x": 1.0},
        {"code": "b", "x": 3.0},
    ]
