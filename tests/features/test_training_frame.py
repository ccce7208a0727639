"""training_frame: bad input is refused clearly; Feast's file-store mistakes are not repeated; sources."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mlprod.features.in_memory_join as in_memory_join
import mlprod.features.latest_rows as latest_rows_module
from mlprod.data import TableStore
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.features import (
    Aggregation,
    AggregationView,
    Entity,
    FeatureSet,
    FeatureView,
    TableSource,
    parse_duration,
    training_frame,
    training_frame_with_lineage,
    write_training_frame,
)
from mlprod.workspace import Workspace

DRIVER = Entity("driver", ["driver_id"])


def t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def stats(**extra: object) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "driver_id": [1, 1, 2],
            "ts": [t("2026-01-01 00:00"), t("2026-01-02 00:00"), t("2026-01-01 00:00")],
            "created": [t("2026-01-01 00:00"), t("2026-01-02 00:00"), t("2026-01-01 00:00")],
            "rate": [0.1, 0.2, 0.3],
        }
    )
    for column, values in extra.items():
        frame[column] = values
    return frame


def view(source: object = None, **options: object) -> FeatureView:
    settings: dict[str, object] = {"timestamp": "ts", "created": "created"} | options
    return FeatureView("stats", DRIVER, stats() if source is None else source, ["rate"], **settings)  # type: ignore[arg-type]


def entities(*rows: tuple[object, str]) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": [r[0] for r in rows], "event_time": [t(r[1]) for r in rows]})


# --- bad input ----------------------------------------------------------------------------------


def test_entity_rows_without_the_event_time_column_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="the entity rows has no event-time column 'event_time'"):
        training_frame(pd.DataFrame({"driver_id": [1], "when": [t("2026-01-01")]}), [view()])
    rows = entities((1, "2026-01-02")).rename(columns={"event_time": "when"})
    assert training_frame(rows, [view()], event_time="when").column("rate").to_pylist() == [0.2]


def test_entity_rows_without_a_key_column_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="no entity-key \\(entity 'driver'\\) column 'driver_id'"):
        training_frame(pd.DataFrame({"event_time": [t("2026-01-01")]}), [view()])


def test_an_unknown_feature_is_named() -> None:
    with pytest.raises(InvalidInputError, match="unknown feature 'speed' in view 'stats'; it has rate"):
        view()["speed"]


@pytest.mark.parametrize("text", ["3 days", "abc", "0d", "-1h", "", "1.5h", "7"])
def test_a_ttl_or_window_that_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="ttl of feature view 'stats'"):
        view(ttl=text)
    with pytest.raises(InvalidInputError, match="window"):
        Aggregation("mean", "rate", text)


def test_durations_parse_and_combine() -> None:
    assert parse_duration("1w2d3h4m5s").total_seconds() == 9 * 86400 + 3 * 3600 + 4 * 60 + 5


@pytest.mark.parametrize(
    ("missing", "role"),
    [("driver_id", "key"), ("ts", "time"), ("created", "time"), ("rate", "feature")],
)
def test_a_source_lacking_a_declared_column_is_named(missing: str, role: str) -> None:
    source = stats().drop(columns=[missing])
    with pytest.raises(InvalidInputError, match=f"source of view 'stats' has no {role} column '{missing}'"):
        training_frame(entities((1, "2026-01-02")), [view(source)])


def test_an_aggregated_column_missing_from_the_source_is_named() -> None:
    counts = AggregationView(
        "counts", DRIVER, stats(), timestamp="ts", aggregations=[Aggregation("sum", "trips", "1d")]
    )
    with pytest.raises(InvalidInputError, match="has no aggregated column 'trips'"):
        training_frame(entities((1, "2026-01-02")), [counts])


def test_mixing_naive_and_aware_times_is_an_error_not_a_guess() -> None:
    naive = entities((1, "2026-01-02"))
    naive["event_time"] = naive["event_time"].dt.tz_localize(None)
    with pytest.raises(InvalidInputError, match="'event_time' of the entity rows has naive timestamps but"):
        training_frame(naive, [view()])
    all_naive = stats()
    for column in ("ts", "created"):
        all_naive[column] = all_naive[column].dt.tz_localize(None)
    naive_result = training_frame(naive, [view(all_naive)]).column("rate").to_pylist()
    assert naive_result == training_frame(entities((1, "2026-01-02")), [view()]).column("rate").to_pylist()


def test_times_that_are_not_timestamps_are_refused() -> None:
    rows = pd.DataFrame({"driver_id": [1], "event_time": ["2026-01-02"]})
    with pytest.raises(InvalidInputError, match=r"must be a timestamp, not VARCHAR .*pd.to_datetime"):
        training_frame(rows, [view()])


def test_keys_of_different_types_are_refused() -> None:
    rows = pd.DataFrame({"driver_id": ["1"], "event_time": [t("2026-01-02")]})
    with pytest.raises(
        InvalidInputError, match="entity key 'driver_id' is VARCHAR in the entity rows but BIGINT"
    ):
        training_frame(rows, [view()])


def test_two_views_producing_one_name_are_refused() -> None:
    other = FeatureView("other", DRIVER, stats(), ["rate"], timestamp="ts")
    with pytest.raises(
        InvalidInputError, match="feature 'rate' is produced by both views 'stats' and 'other'"
    ):
        training_frame(entities((1, "2026-01-02")), [view(), other])


def test_a_static_view_with_repeated_keys_is_refused() -> None:
    static = FeatureView("cars", DRIVER, stats(), ["rate"], timestamp=None)
    with pytest.raises(InvalidInputError, match="static view 'cars' has 2 rows for key \\{'driver_id': 1\\}"):
        training_frame(entities((1, "2026-01-02")), [static])


def test_a_missing_source_file_and_a_bad_derived_column_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="source of view 'stats': no file"):
        training_frame(entities((1, "2026-01-02")), [view(str(tmp_path / "nope.parquet"))])
    derived = FeatureView(
        "stats", DRIVER, stats(), ["double"], timestamp="ts", derive={"double": "rate * nope"}
    )
    with pytest.raises(
        InvalidInputError, match=r"derived columns .* do not evaluate on source of view 'stats'"
    ):
        training_frame(entities((1, "2026-01-02")), [derived])


def test_entity_columns_that_clash_with_features_are_refused() -> None:
    rows = entities((1, "2026-01-02")).assign(rate=1.0)
    with pytest.raises(InvalidInputError, match="already have column\\(s\\) \\['rate'\\]"):
        training_frame(rows, [view()])


# --- Feast file-store mistakes, not repeated ----------------------------------------------------


def test_rows_without_a_value_inside_the_ttl_come_back_with_nulls_not_dropped() -> None:
    rows = entities((1, "2026-01-02 12:00"), (1, "2026-01-09"), (2, "2026-01-05"), (3, "2026-01-02"))
    result = training_frame(rows, [view(ttl="1d")])
    assert result.num_rows == 4
    assert result.column("driver_id").to_pylist() == [1, 1, 2, 3]
    assert result.column("rate").to_pylist() == [0.2, None, None, None]


def test_ties_on_feature_time_go_to_the_latest_created_time_every_time() -> None:
    rng = np.random.default_rng(0)
    n = 50
    base = pd.DataFrame(
        {
            "driver_id": np.repeat(np.arange(10), n // 10),
            "ts": [t("2026-01-01")] * n,
            "created": [t("2026-01-01") + pd.Timedelta(minutes=int(m)) for m in rng.permutation(n)],
        }
    )
    base["rate"] = base["created"].astype("int64") / 1e12  # the latest created row has the largest rate
    expected = base.groupby("driver_id")["rate"].max().to_list()
    rows = pd.DataFrame({"driver_id": np.arange(10), "event_time": [t("2026-01-02")] * 10})
    for seed in range(10):  # whatever order the rows arrive in
        shuffled = base.sample(frac=1.0, random_state=seed)
        for late_filter in (True, False):
            v = view(shuffled, created_time_filter=late_filter)
            assert training_frame(rows, [v]).column("rate").to_pylist() == expected


# --- semantics worth naming -----------------------------------------------------------------------


def test_late_rows_are_hidden_until_written_unless_the_view_is_feast_compatible() -> None:
    backfill = stats()
    backfill.loc[1, "created"] = t("2026-01-05")  # Jan 2's value was only written on Jan 5
    rows = entities((1, "2026-01-03"), (1, "2026-01-06"))
    assert training_frame(rows, [view(backfill)]).column("rate").to_pylist() == [0.1, 0.2]
    feast_like = view(backfill, created_time_filter=False)
    assert training_frame(rows, [feast_like]).column("rate").to_pylist() == [0.2, 0.2]


def test_entity_rows_keep_their_order_and_columns_and_extra_columns_pass_through() -> None:
    rows = entities((2, "2026-01-03"), (1, "2026-01-01 12:00"), (1, "2026-01-03")).assign(label=[1, 0, 1])
    result = training_frame(rows, FeatureSet("s", [view()]))
    assert result.column_names == ["driver_id", "event_time", "label", "rate"]
    assert result.column("rate").to_pylist() == [0.3, 0.1, 0.2]
    assert result.column("label").to_pylist() == [1, 0, 1]


def test_windows_count_rows_after_the_window_start_up_to_the_event() -> None:
    source = pd.DataFrame(
        {"driver_id": [1, 1, 1], "ts": [t("2026-01-01 00:00"), t("2026-01-01 01:00"), t("2026-01-01 02:00")],
         "trip": [1.0, None, 3.0]}
    )  # fmt: skip
    trips = AggregationView(
        "trips", DRIVER, source, timestamp="ts",
        aggregations=[Aggregation("count", None, "1h"), Aggregation("count", "trip", "2h"),
                      Aggregation("sum", "trip", "2h"), Aggregation("mean", "trip", "1d"),
                      Aggregation("min", "trip", "1d"), Aggregation("max", "trip", "1d")],
    )  # fmt: skip
    result = training_frame(
        entities((1, "2026-01-01 02:00"), (1, "2026-01-01 00:30"), (2, "2026-01-01")), [trips]
    )
    assert result.select(trips.feature_names).to_pylist() == [
        {"rows_count_1h": 1, "trip_count_2h": 1, "trip_sum_2h": 3.0, "trip_mean_1d": 2.0, "trip_min_1d": 1.0,
         "trip_max_1d": 3.0},
        {"rows_count_1h": 1, "trip_count_2h": 1, "trip_sum_2h": 1.0, "trip_mean_1d": 1.0, "trip_min_1d": 1.0,
         "trip_max_1d": 1.0},
        {"rows_count_1h": 0, "trip_count_2h": 0, "trip_sum_2h": None, "trip_mean_1d": None,
         "trip_min_1d": None, "trip_max_1d": None},
    ]  # fmt: skip


# --- sources and out-of-core ------------------------------------------------------------------------


def test_parquet_and_csv_sources_give_the_same_frame(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(stats(), preserve_index=False), tmp_path / "stats.parquet")
    stats().to_csv(tmp_path / "stats.csv", index=False)
    rows = entities((1, "2026-01-03"), (2, "2026-01-03"))
    expected = training_frame(rows, [view()]).column("rate").to_pylist()
    for name in ("stats.parquet", "stats.csv"):
        assert training_frame(rows, [view(str(tmp_path / name))]).column("rate").to_pylist() == expected


def test_a_frame_built_under_a_tight_memory_limit_is_identical(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 400_000
    source = pd.DataFrame(
        {
            "driver_id": rng.integers(0, 5000, n),
            "ts": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 90 * 86400, n), unit="s"),
        }
    )
    source["created"] = source["ts"]
    for i in range(6):
        source[f"f{i}"] = rng.random(n)
    path = tmp_path / "source.parquet"
    source.to_parquet(path)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    rows = pd.DataFrame(
        {
            "driver_id": rng.integers(0, 5000, 200_000),
            "event_time": start + pd.to_timedelta(rng.integers(0, 90 * 86400, 200_000), unit="s"),
        }
    )
    rows_path = tmp_path / "rows.parquet"
    rows.to_parquet(rows_path)
    wide = FeatureView(
        "wide", DRIVER, str(path), [f"f{i}" for i in range(6)], timestamp="ts", created="created"
    )
    in_memory = training_frame(rows_path, [wide])
    write_training_frame(rows_path, [wide], tmp_path / "out.parquet", memory_limit="40MB")
    assert pq.read_table(tmp_path / "out.parquet").cast(in_memory.schema).equals(in_memory)


def test_a_versioned_table_source_records_its_commit(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    tables.create("stats", key=["driver_id", "ts"], data=pa.Table.from_pandas(stats(), preserve_index=False))
    head = tables.resolve("stats")
    source_view = view(TableSource("stats"))
    frame, lineage = training_frame_with_lineage(
        entities((1, "2026-01-03")), FeatureSet("s", [source_view]), workspace=workspace
    )
    assert frame.column("rate").to_pylist() == [0.2]
    assert lineage.sources["stats"]["commit"] == head.id
    assert lineage.version == FeatureSet("s", [source_view]).version
    with pytest.raises(InvalidInputError, match="needs a workspace"):
        training_frame(entities((1, "2026-01-03")), [source_view])


# --- the two join methods -----------------------------------------------------------------------


def typed_source() -> pd.DataFrame:
    """Feature columns of many types, nulls in each, keys as floats (a key column with nulls often is)."""
    frame = pd.DataFrame(
        {
            "driver_id": [1.0, 1.0, 2.0, 3.0, None],
            "ts": [t("2026-01-01"), t("2026-01-02"), t("2026-01-01"), t("2026-01-03"), t("2026-01-01")],
            "rate": [0.1, None, 0.3, float("nan"), 0.5],
            "trips": pd.array([4, None, 6, 7, 8], dtype="Int64"),
            "city": ["a", None, "b", "c", "d"],
            "level": pd.Categorical(["x", "y", None, "x", "y"]),
            "active": pd.array([True, None, False, True, True], dtype="boolean"),
            "seen": [t("2025-12-31"), None, t("2025-12-30"), t("2026-01-02"), t("2026-01-01")],
        }
    )
    return frame


@pytest.mark.parametrize("form", ["parquet", "csv", "frame"])
def test_both_join_methods_give_the_same_frame_with_the_same_types(tmp_path: Path, form: str) -> None:
    """Values and Arrow types agree whichever method joins (the in-memory one reads Parquet with pyarrow
    and must cast to the types DuckDB gives); an integer key meets a float key column."""
    source: object = typed_source()
    if form == "parquet":
        source = tmp_path / "typed.parquet"
        typed_source().to_parquet(source)
    elif form == "csv":
        source = tmp_path / "typed.csv"
        typed_source().to_csv(source, index=False)
    features = ["rate", "trips", "city", "level", "active", "seen"]
    typed = FeatureView("typed", DRIVER, source, features, timestamp="ts", ttl="36h")  # type: ignore[arg-type]
    rows = entities(
        (1, "2026-01-02 12:00"), (2, "2026-01-02"), (3, "2026-01-02"), (1, "2026-01-05"), (4, "2026-01-02")
    )
    in_memory = training_frame(rows, [typed], method="in_memory")
    asof = training_frame(rows, [typed], method="asof")
    assert in_memory.schema == asof.schema
    assert in_memory.equals(asof)
    assert in_memory.column("rate").to_pylist() == [None, 0.3, None, None, None]
    assert in_memory.column("city").to_pylist() == [None, "b", None, None, None]


def test_an_unknown_join_method_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="method"):
        training_frame(entities((1, "2026-01-03")), [view()], method="fast")  # type: ignore[arg-type]


def same_by_both_methods(rows: pa.Table | pd.DataFrame, views: list[FeatureView]) -> pa.Table:
    in_memory = training_frame(rows, views, method="in_memory")
    asof = training_frame(rows, views, method="asof")
    assert in_memory.equals(asof), (in_memory.to_pydict(), asof.to_pydict())
    return in_memory


UTC_US = pa.timestamp("us", tz="UTC")


def test_too_many_key_combinations_fall_back_to_the_asof_join() -> None:
    """Five key columns of 6,000 distinct values each: their combined codes would pass 2**62."""
    n, keys = 6_000, [f"k{j}" for j in range(5)]
    rng = np.random.default_rng(0)
    columns = {key: pa.array(rng.permutation(n)) for key in keys}
    rows = pa.table({**columns, "event_time": pa.array(np.full(n, 10**15)).cast(UTC_US)})
    source = pa.table(
        {**columns, "ts": pa.array(np.full(n, 10**14)).cast(UTC_US), "v": np.arange(n, dtype=float)}
    )
    framed = same_by_both_methods(rows, [FeatureView("v", Entity("e", keys), source, ["v"], timestamp="ts")])
    assert framed.column("v").to_pylist() == list(np.arange(n, dtype=float))


def test_a_key_asked_only_by_rows_without_a_time_cannot_hide_another_keys_row() -> None:
    """Key 16 is asked for only by a row with a null event time, so no entity code needs its bits; its
    source row must not wrap into key 0's range (times spread over 2**57 µs fill the word)."""
    start = -62_000_000_000_000_001
    rows = pa.table(
        {
            "k": pa.array(range(17)),
            "event_time": pa.array([start + 100] * 16 + [None], pa.int64()).cast(UTC_US),
        }
    )
    source = pa.table(
        {
            "k": [0, 16, 1],
            "ts": pa.array([start, start + 10, start + 2**57 + 5]).cast(UTC_US),
            "v": [1.0, 2.0, 3.0],
        }
    )
    framed = same_by_both_methods(rows, [FeatureView("v", Entity("e", ["k"]), source, ["v"], timestamp="ts")])
    assert framed.column("v").to_pylist()[:2] == [1.0, None]


def test_keys_compare_by_value_across_number_types() -> None:
    """-0.0 is 0.0; a BIGINT key meets a UBIGINT one exactly, past 2**53 where doubles collide."""
    zeros = pa.table({"k": [0.0, -0.0], "ts": pa.array([0, 3_600_000_000]).cast(UTC_US), "v": [0.0, 1.0]})
    rows = pa.table({"k": [0.0], "event_time": pa.array([10**13]).cast(UTC_US)})
    framed = same_by_both_methods(rows, [FeatureView("v", Entity("e", ["k"]), zeros, ["v"], timestamp="ts")])
    assert framed.column("v").to_pylist() == [1.0]
    big = pa.table(
        {"k": pa.array([2**53 + 1, 2**53], pa.uint64()), "ts": pa.array([0, 1]).cast(UTC_US), "v": [1.0, 0.0]}
    )
    rows = pa.table({"k": pa.array([2**53 + 1], pa.int64()), "event_time": pa.array([10**13]).cast(UTC_US)})
    framed = same_by_both_methods(rows, [FeatureView("v", Entity("e", ["k"]), big, ["v"], timestamp="ts")])
    assert framed.column("v").to_pylist() == [1.0]


def test_infinite_timestamps_are_left_to_the_asof_join() -> None:
    source = duckdb.sql(
        "SELECT * FROM (VALUES (4, 'infinity'::TIMESTAMPTZ, 3.0), (5, '2020-01-01'::TIMESTAMPTZ, 4.0), "
        "(6, '-infinity'::TIMESTAMPTZ, 5.0)) t(k, ts, v)"
    ).to_arrow_table()
    rows = duckdb.sql(
        "SELECT * FROM (VALUES (4, '2027-01-01'::TIMESTAMPTZ), (5, '2021-01-01'::TIMESTAMPTZ), "
        "(6, '1960-01-01'::TIMESTAMPTZ)) t(k, event_time)"
    ).to_arrow_table()
    framed = same_by_both_methods(rows, [FeatureView("v", Entity("e", ["k"]), source, ["v"], timestamp="ts")])
    assert framed.column("v").to_pylist() == [None, 4.0, 5.0]


def test_infinite_timestamps_in_a_parquet_file_are_left_to_the_asof_join(tmp_path: Path) -> None:
    """An infinite timestamp in a Parquet file (stored as an int64 extreme, read back by DuckDB as
    infinite): the in-memory join leaves the view to the ASOF join, as for one in memory."""
    path = tmp_path / "infinite.parquet"
    duckdb.sql(
        "SELECT * FROM (VALUES (4, 'infinity'::TIMESTAMPTZ, 3.0), (5, '2020-01-01'::TIMESTAMPTZ, 4.0), "
        "(6, '-infinity'::TIMESTAMPTZ, 5.0)) t(k, ts, v)"
    ).write_parquet(str(path))
    rows = duckdb.sql(
        "SELECT * FROM (VALUES (4, '2027-01-01'::TIMESTAMPTZ), (5, '2021-01-01'::TIMESTAMPTZ), "
        "(6, '1960-01-01'::TIMESTAMPTZ)) t(k, event_time)"
    ).to_arrow_table()
    view = FeatureView("v", Entity("e", ["k"]), str(path), ["v"], timestamp="ts")
    assert same_by_both_methods(rows, [view]).column("v").to_pylist() == [None, 4.0, 5.0]


def test_parquet_columns_pyarrow_types_unlike_duckdb_and_one_column_twice(tmp_path: Path) -> None:
    """A UUID column (pyarrow: 16 bytes, DuckDB: text) is gathered through DuckDB; a column may feed
    two outputs."""
    path = tmp_path / "u.parquet"
    ids = pa.array([uuid.UUID(int=1).bytes, uuid.UUID(int=2**127 + 5).bytes], type=pa.uuid())
    pq.write_table(
        pa.table({"k": [1, 2], "ts": pa.array([0, 1]).cast(UTC_US), "u": ids, "v": [0.5, 1.5]}), path
    )
    rows = pa.table({"k": [1, 2], "event_time": pa.array([10**15, 10**15]).cast(UTC_US)})
    outputs = {"u": "u", "a": "v", "b": "v"}
    framed = same_by_both_methods(
        rows, [FeatureView("v", Entity("e", ["k"]), str(path), outputs, timestamp="ts")]
    )
    assert framed.column("a").to_pylist() == framed.column("b").to_pylist() == [0.5, 1.5]
    assert framed.column("u").to_pylist() == [str(uuid.UUID(int=1)), str(uuid.UUID(int=2**127 + 5))]


def test_a_failing_block_closes_its_stream_for_the_asof_join(monkeypatch: pytest.MonkeyPatch) -> None:
    """An infinite timestamp in one of many blocks: the join in memory gives up, closes its DuckDB
    stream and the ASOF join answers."""
    monkeypatch.setattr(in_memory_join, "BLOCK_ROWS", 4)
    source = duckdb.sql(
        "SELECT 1 AS k, CASE WHEN i = 1 THEN 'infinity'::TIMESTAMPTZ "
        "ELSE make_timestamp(i * 1000000000000)::TIMESTAMPTZ END AS ts, i::DOUBLE AS v FROM range(40) t(i)"
    ).to_arrow_table()
    rows = pa.table({"k": [1], "event_time": pa.array([10**15]).cast(UTC_US)})
    framed = same_by_both_methods(rows, [FeatureView("v", Entity("e", ["k"]), source, ["v"], timestamp="ts")])
    assert framed.column("v").to_pylist() == [39.0]


def test_a_slow_failing_block_does_not_hang_the_join(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first block fails after the other thread has taken every slot: the join still ends."""
    monkeypatch.setattr(in_memory_join, "BLOCK_ROWS", 2)
    search = latest_rows_module.LatestRows.block

    def slow_first_block(
        self: object, codes: np.ndarray, times: np.ndarray, created: object, scratch: object = None
    ) -> object:
        if int(times.min()) == 0:
            time.sleep(0.5)
            raise latest_rows_module.TooWideError("injected")
        return search(self, codes, times, created, scratch)  # type: ignore[arg-type]

    monkeypatch.setattr(latest_rows_module.LatestRows, "block", slow_first_block)
    source = pa.table({"k": [1] * 10, "ts": pa.array(range(10)).cast(UTC_US), "v": list(range(10))})
    rows = pa.table({"k": [1], "event_time": pa.array([100]).cast(UTC_US)})
    view = FeatureView("v", Entity("e", ["k"]), source, ["v"], timestamp="ts")
    answer: list[pa.Table] = []
    runner = threading.Thread(target=lambda: answer.append(training_frame(rows, [view], method="in_memory")))
    runner.daemon = True
    runner.start()
    runner.join(60)
    assert answer and answer[0].column("v").to_pylist() == [9]


def test_required_parquet_columns_are_gathered(tmp_path: Path) -> None:
    """Parquet columns declared required (no nulls) read by pyarrow, where DuckDB says nullable."""
    schema = pa.schema(
        [pa.field("k", pa.int64(), False), pa.field("ts", UTC_US, False), pa.field("s", pa.string(), False)]
    )
    path = tmp_path / "required.parquet"
    pq.write_table(
        pa.table({"k": [1, 2, 3], "ts": pa.array([1, 2, 3]).cast(UTC_US), "s": ["a", "b", "c"]}, schema),
        path,
        row_group_size=1,
    )
    rows = pa.table({"k": [1, 2, 9], "event_time": pa.array([10, 10, 10]).cast(UTC_US)})
    view = FeatureView("v", Entity("e", ["k"]), str(path), ["s"], timestamp="ts")
    assert same_by_both_methods(rows, [view]).column("s").to_pylist() == ["a", "b", None]


@pytest.mark.parametrize("method", ["in_memory", "asof"])
@pytest.mark.parametrize("form", ["parquet", "arrow"])
def test_entity_rows_come_back_in_order_when_duckdb_returns_them_reordered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str, method: str
) -> None:
    """DuckDB may return a scan out of order (without ``preserve_insertion_order``, say): the entity
    relation is made to come back in hash order, and the frame still has the entity rows in order."""
    import mlprod.features.offline as offline

    register = offline._register_entities

    def reordered(conn: duckdb.DuckDBPyConnection, rows: object, event_time: str) -> object:
        entities = register(conn, rows, event_time)  # type: ignore[arg-type]
        conn.execute(
            f"CREATE TEMP VIEW reordered AS SELECT * FROM {entities.relation} ORDER BY hash({offline.ROW})"
        )
        order = conn.sql(f"SELECT {offline.ROW} FROM reordered").to_arrow_table().column(0).to_numpy()
        assert not np.array_equal(order, np.arange(len(order)))
        return dataclasses.replace(entities, relation="reordered")

    monkeypatch.setattr(offline, "_register_entities", reordered)
    keys = np.arange(5_000) % 3
    rows = pa.table({"driver_id": keys, "event_time": pa.array(np.arange(5_000) + 10**6).cast(UTC_US)})
    if form == "parquet":
        pq.write_table(rows, tmp_path / "entities.parquet")
    source = pa.table(
        {"driver_id": [0, 1, 2], "ts": pa.array([0, 0, 0]).cast(UTC_US), "rate": [0.5, 1.5, 2.5]}
    )
    entity_rows = str(tmp_path / "entities.parquet") if form == "parquet" else rows
    frame = training_frame(entity_rows, [view(source, created=None)], method=method)  # type: ignore[arg-type]
    assert np.array_equal(frame.column("driver_id").to_numpy(), keys)
    assert np.array_equal(frame.column("rate").to_numpy(), keys + 0.5)


@pytest.mark.parametrize(
    "kind", [pa.int32(), pa.float64(), pa.timestamp("us", tz="UTC"), pa.string()], ids=str
)
@pytest.mark.parametrize("nulls", [False, True], ids=["no nulls", "nulls"])
def test_values_taken_from_a_columns_buffers_equal_arrows_take(kind: pa.DataType, nulls: bool) -> None:
    """The gather reads a Parquet column's values and validity straight from its buffers (here a slice,
    so at an offset): the same cells as Arrow's take, nulls in the same places."""
    rng = np.random.default_rng(5)
    values = pa.array(rng.integers(0, 1000, 50), type=pa.int64()).cast(kind)
    if nulls:
        values = pa.array(values.to_pylist(), type=kind, mask=rng.random(50) < 0.3)
    column = pa.chunked_array([values.slice(7, 30)])
    index = np.sort(rng.choice(30, 12, replace=False))
    positions = rng.permutation(20)[:12]
    schema = pa.schema([pa.field("v", kind)])
    by_buffers, by_take = in_memory_join.Placed(schema, 20), in_memory_join.Placed(schema, 20)
    by_buffers.put_taken(0, positions, column, index)
    by_take.put_column(0, positions, column.take(pa.array(index)).combine_chunks())
    assert by_buffers.table().equals(by_take.table())
    assert by_buffers.table().column(0).null_count == 20 - 12 + (nulls and column.take(index).null_count)


def test_a_ttl_view_found_by_duckdb_is_placed_by_row_beside_an_aggregation() -> None:
    """The TTL equi-join gives only the rows that found a value, put in place by row number: alone
    the frame is assembled from them, beside an aggregation view they join the SQL frame; the same
    frame either way as the in-memory join's."""
    source = pd.DataFrame({"driver_id": [1, 2], "ts": [t("2026-01-01 00:00"), t("2026-01-01 01:00")],
                           "trip": [1.0, 2.0]})  # fmt: skip
    trips = AggregationView(
        "trips", DRIVER, source, timestamp="ts", aggregations=[Aggregation("count", None, "1d")]
    )
    rows = entities(
        (2, "2026-01-01 02:00"), (1, "2026-01-02 12:00"), (9, "2026-01-02"), (1, "2026-01-01 12:00")
    )
    for views in ([view(ttl="1d")], [view(ttl="1d"), trips]):
        found = same_by_both_methods(rows, views)
        assert found.column("rate").to_pylist() == [0.3, 0.2, None, 0.1]
    assert found.column("rows_count_1d").to_pylist() == [1, 0, 0, 1]
