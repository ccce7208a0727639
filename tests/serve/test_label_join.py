"""Late labels joined to a real prediction log (Parquet files on disk, DuckDB doing the joins)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlprod.errors import InvalidInputError
from mlprod.serve.label_join import join_labels
from mlprod.serve.prediction_log import SCHEMA, PredictionLogWriter, read_prediction_log

T0 = datetime(2013, 1, 1, 10, 0, tzinfo=UTC)
TIME = pa.timestamp("us", tz="UTC")


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def write_log(directory: Path, rows: list[dict[str, Any]]) -> pa.Table:
    """A log file as the writer lays it out (``date=…/part-….parquet``), read back by the real reader."""
    full = [
        {
            "row": 0,
            "model": "m",
            "version": 1,
            "route": "champion",
            "prediction": 0.5,
            "latency_ms": 1.0,
            **r,
            "inputs": json.dumps(r.get("inputs", {})),
        }
        for r in rows
    ]
    table = pa.Table.from_pylist(full, schema=SCHEMA)
    part = directory / "date=2013-01-01"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, part / f"part-{len(list(part.iterdir())):04d}.parquet")
    return read_prediction_log(directory)


def labels_of(**columns: Any) -> pa.Table:
    return pa.table(columns)


# -- by request id ---------------------------------------------------------------------------------


def test_labels_join_by_request_id_from_the_real_writer(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, start=False)
    for request_id, n in (("r1", 1), ("r2", 1), ("r3", 2)):
        writer.append(
            request_id=request_id,
            model="m",
            version=1,
            route="champion",
            inputs=[{"x": i} for i in range(n)],
            predictions=[0.1 * (i + 1) for i in range(n)],
            latency_ms=1.0,
        )
    writer.close()
    log = read_prediction_log(tmp_path)
    joined = join_labels(log, labels_of(request_id=["r3", "r1", "unknown"], label=[True, False, True]))
    assert joined.column_names == [*log.column_names, "label", "label_time"]
    assert joined.column("request_id").to_pylist() == log.column("request_id").to_pylist()  # the log's order
    assert list(
        zip(
            joined["request_id"].to_pylist(),
            joined["row"].to_pylist(),
            joined["label"].to_pylist(),
            strict=True,
        )
    ) == [
        ("r1", 0, False),
        ("r2", 0, None),  # not labelled yet: kept, with a null label
        ("r3", 0, True),  # no row column: the label is for row 0 ...
        ("r3", 1, None),  # ... only
    ]
    assert joined.schema.field("label").type == pa.bool_()
    assert joined.column("label_time").null_count == joined.num_rows


def test_the_row_column_picks_the_row_and_null_means_row_0(tmp_path: Path) -> None:
    log = write_log(tmp_path, [{"request_id": "r", "row": i, "time": T0} for i in range(3)])
    labels = labels_of(request_id=["r", "r"], row=pa.array([2, None], pa.int64()), label=[1.5, 0.5])
    assert join_labels(log, labels).column("label").to_pylist() == [0.5, None, 1.5]


def test_the_latest_label_wins(tmp_path: Path) -> None:
    log = write_log(tmp_path, [{"request_id": r, "time": T0} for r in ("a", "b")])
    by_time = labels_of(
        request_id=["a", "a", "a"],
        label=["newest", "oldest", "middle"],
        at=pa.array([minutes(30), minutes(10), minutes(20)], TIME),
    )
    joined = join_labels(log, by_time, time_column="at")
    assert joined.column("label").to_pylist() == ["newest", None]
    assert joined.column("label_time").to_pylist() == [minutes(30), None]
    by_position = labels_of(request_id=["b", "b"], label=["first", "correction"])
    assert join_labels(log, by_position).column("label").to_pylist() == [None, "correction"]


def test_shadow_rows_get_the_label_of_the_request_they_mirror(tmp_path: Path) -> None:
    log = write_log(
        tmp_path,
        [
            {"request_id": "r", "time": T0, "route": "champion", "version": 1},
            {"request_id": "r", "time": T0 + timedelta(milliseconds=5), "route": "shadow", "version": 2},
        ],
    )
    joined = join_labels(log, labels_of(request_id=["r"], label=[1]))
    assert joined.column("label").to_pylist() == [1, 1]
    champion = joined.filter(pc.equal(joined.column("route"), "champion"))  # the caller picks the route
    assert champion.column("version").to_pylist() == [1]


def test_empty_labels_and_empty_log(tmp_path: Path) -> None:
    log = write_log(tmp_path, [{"request_id": "a", "time": T0}])
    empty_labels = labels_of(request_id=pa.array([], pa.string()), label=pa.array([], pa.int64()))
    joined = join_labels(log, empty_labels)
    assert joined.column("label").to_pylist() == [None]
    assert joined.schema.field("label").type == pa.int64()
    nothing = join_labels(read_prediction_log(tmp_path / "none"), labels_of(request_id=["a"], label=[1]))
    assert nothing.num_rows == 0 and nothing.column_names[-2:] == ["label", "label_time"]


def test_a_label_column_of_another_name(tmp_path: Path) -> None:
    log = write_log(tmp_path, [{"request_id": "a", "time": T0}])
    joined = join_labels(log, labels_of(request_id=["a"], delayed=[True]), label="delayed")
    assert joined.column("delayed").to_pylist() == [True]


# -- by entity key and time ------------------------------------------------------------------------


@pytest.fixture
def flights_log(tmp_path: Path) -> pa.Table:
    return write_log(
        tmp_path,
        [
            {"request_id": "p1", "time": minutes(0), "inputs": {"dest": "LAX", "x": 1.0}},
            {"request_id": "p2", "time": minutes(30), "inputs": {"dest": "SFO", "x": 2.0}},
            {"request_id": "p3", "time": minutes(60), "inputs": {"dest": "LAX", "x": 3.0}},
            {"request_id": "p4", "time": minutes(90), "inputs": {"x": 4.0}},  # no entity key
        ],
    )


def test_a_label_goes_to_the_latest_prediction_at_or_before_its_time(flights_log: pa.Table) -> None:
    labels = labels_of(
        dest=["LAX", "LAX", "SFO", "SFO"],
        arrived=pa.array([minutes(59), minutes(60), minutes(29), minutes(45)], TIME),
        label=[10, 20, 99, 30],
    )
    joined = join_labels(flights_log, labels, on=["dest"], time_column="arrived")
    # LAX@59 → p1 (p3 is later); LAX@60 → p3 (at or before: equal times match); SFO@29 → nothing
    assert joined.column("label").to_pylist() == [10, 30, 20, None]
    assert joined.column("label_time").to_pylist() == [minutes(59), minutes(45), minutes(60), None]


def test_tolerance_bounds_how_old_the_prediction_may_be(flights_log: pa.Table) -> None:
    labels = labels_of(dest=["LAX"], at=pa.array([minutes(120)], TIME), label=[1])
    kwargs: dict[str, Any] = {"on": ["dest"], "time_column": "at"}
    assert (
        join_labels(flights_log, labels, **kwargs, tolerance=timedelta(minutes=59))
        .column("label")
        .to_pylist()
        == [None] * 4
    )
    within = join_labels(flights_log, labels, **kwargs, tolerance=timedelta(minutes=60))  # inclusive
    assert within.column("label").to_pylist() == [None, None, 1, None]
    assert join_labels(flights_log, labels, **kwargs).column("label").to_pylist() == [None, None, 1, None]


def test_several_labels_for_one_prediction_the_latest_wins(flights_log: pa.Table) -> None:
    labels = labels_of(dest=["SFO", "SFO"], at=pa.array([minutes(50), minutes(40)], TIME), label=[2, 1])
    joined = join_labels(flights_log, labels, on=["dest"], time_column="at")
    assert joined.column("label").to_pylist() == [None, 2, None, None]


def test_composite_keys_compare_as_the_json_text(tmp_path: Path) -> None:
    log = write_log(
        tmp_path,
        [
            {
                "request_id": "a",
                "time": minutes(0),
                "inputs": {"carrier": "UA", "flight": 1545, "late": True},
            },
            {
                "request_id": "b",
                "time": minutes(0),
                "inputs": {"carrier": "AA", "flight": 1545, "late": True},
            },
            {
                "request_id": "c",
                "time": minutes(0),
                "inputs": {"carrier": "UA", "flight": 1714, "late": False},
            },
        ],
    )
    labels = labels_of(
        carrier=["UA", "UA"],
        flight=pa.array([1545, 1714], pa.int64()),
        late=[True, False],
        at=pa.array([minutes(5), minutes(5)], TIME),
        label=["x", "y"],
    )
    joined = join_labels(log, labels, on=["carrier", "flight", "late"], time_column="at")
    assert joined.column("label").to_pylist() == ["x", None, "y"]


def test_entity_join_labels_the_shadow_row_with_its_served_row(tmp_path: Path) -> None:
    inputs = {"dest": "LAX"}
    log = write_log(
        tmp_path,
        [
            {"request_id": "r", "time": minutes(0), "route": "canary", "inputs": inputs},
            {"request_id": "r", "time": minutes(0.01), "route": "shadow", "inputs": inputs},
        ],
    )
    labels = labels_of(dest=["LAX"], at=pa.array([minutes(1)], TIME), label=[7])
    assert join_labels(log, labels, on=["dest"], time_column="at").column("label").to_pylist() == [7, 7]


def test_label_times_in_another_zone_compare_as_instants(flights_log: pa.Table) -> None:
    new_york = ZoneInfo("America/New_York")
    at = minutes(59).astimezone(new_york)  # 05:59 in New York is 10:59 UTC
    labels = labels_of(dest=["LAX"], at=pa.array([at], pa.timestamp("s", tz="America/New_York")), label=[1])
    joined = join_labels(flights_log, labels, on=["dest"], time_column="at")
    assert joined.column("label").to_pylist() == [1, None, None, None]
    assert joined.column("label_time").to_pylist() == [minutes(59), None, None, None]


def test_keys_with_dots_and_quotes(tmp_path: Path) -> None:
    key = 'a.b "c"'
    log = write_log(tmp_path, [{"request_id": "a", "time": minutes(0), "inputs": {key: "v"}}])
    labels = pa.table({key: ["v"], "at": pa.array([minutes(1)], TIME), "label": [1]})
    assert join_labels(log, labels, on=[key], time_column="at").column("label").to_pylist() == [1]


@settings(max_examples=40, deadline=None)
@given(
    predictions=st.lists(st.tuples(st.sampled_from("ABC"), st.integers(0, 20)), max_size=15),
    labels=st.lists(st.tuples(st.sampled_from("ABCD"), st.integers(0, 25)), max_size=10),
    tolerance=st.one_of(st.none(), st.integers(0, 10)),
)
def test_entity_join_matches_a_brute_force_asof(
    predictions: list[tuple[str, int]], labels: list[tuple[str, int]], tolerance: int | None
) -> None:
    """The DuckDB ASOF JOIN agrees with the definition, written naively."""
    log = pa.Table.from_pylist(
        [
            {
                "request_id": f"p{i}",
                "row": 0,
                "time": minutes(t),
                "route": "champion",
                "inputs": json.dumps({"k": k}),
            }
            for i, (k, t) in enumerate(predictions)
        ],
        schema=pa.schema([SCHEMA.field(n) for n in ("request_id", "row", "time", "route", "inputs")]),
    )
    table = pa.table(
        {
            "k": pa.array([k for k, _ in labels], pa.string()),
            "at": pa.array([minutes(t) for _, t in labels], TIME),
            "label": pa.array(range(len(labels)), pa.int64()),
        }
    )
    limit = None if tolerance is None else timedelta(minutes=tolerance)
    got = join_labels(log, table, on=["k"], time_column="at", tolerance=limit).column("label").to_pylist()
    expected: list[int | None] = [None] * len(predictions)
    best: dict[int, tuple[int, int]] = {}
    for j, (k, t) in enumerate(labels):
        earlier = [(pt, i) for i, (pk, pt) in enumerate(predictions) if pk == k and pt <= t]
        if not earlier:
            continue
        latest_time = max(pt for pt, _ in earlier)
        if tolerance is not None and t - latest_time > tolerance:
            continue
        tied = [i for pt, i in earlier if pt == latest_time]
        for i in tied:  # DuckDB picks one of equal-time predictions: accept whichever it picked
            if got[i] == j or len(tied) == 1:
                if i not in best or (t, j) > best[i]:
                    best[i] = (t, j)
                break
    for i, (_, j) in best.items():
        expected[i] = j
    assert got == expected


# -- errors ----------------------------------------------------------------------------------------


def test_labels_without_the_join_columns_are_refused(flights_log: pa.Table) -> None:
    with pytest.raises(
        InvalidInputError, match=r"labels lack column\(s\) 'request_id' .*they have id, label"
    ):
        join_labels(flights_log, labels_of(id=["p1"], label=[1]))
    with pytest.raises(InvalidInputError, match=r"labels lack column\(s\) 'label'"):
        join_labels(flights_log, labels_of(request_id=["p1"], y=[1]))
    at = pa.array([minutes(1)], TIME)
    with pytest.raises(InvalidInputError, match=r"labels lack column\(s\) 'origin', 'when'"):
        join_labels(
            flights_log, labels_of(dest=["LAX"], at=at, label=[1]), on=["dest", "origin"], time_column="when"
        )


def test_on_must_be_request_id_or_a_list_of_keys(flights_log: pa.Table) -> None:
    labels = labels_of(dest=["LAX"], label=[1])
    with pytest.raises(InvalidInputError, match=r"on='dest' is not a join; .*e\.g\. on=\['dest'\]"):
        join_labels(flights_log, labels, on="dest")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="on must name at least one entity key column"):
        join_labels(flights_log, labels, on=[], time_column="at")
    with pytest.raises(InvalidInputError, match="on names a column twice"):
        join_labels(flights_log, labels, on=["dest", "dest"], time_column="at")


def test_an_entity_key_missing_from_the_logged_inputs_is_named(flights_log: pa.Table) -> None:
    labels = labels_of(dst=["LAX"], at=pa.array([minutes(1)], TIME), label=[1])
    with pytest.raises(
        InvalidInputError, match=r"no logged prediction has the entity key\(s\) 'dst'.*have dest, x"
    ):
        join_labels(flights_log, labels, on=["dst"], time_column="at")


def test_entity_join_needs_a_time_column(flights_log: pa.Table) -> None:
    with pytest.raises(InvalidInputError, match=r"joining by entity key \['dest'\] needs time_column"):
        join_labels(flights_log, labels_of(dest=["LAX"], label=[1]), on=["dest"])


def test_naive_and_aware_times_do_not_mix(flights_log: pa.Table) -> None:
    naive = labels_of(dest=["LAX"], at=pa.array([datetime(2013, 1, 1, 11)], pa.timestamp("us")), label=[1])
    with pytest.raises(
        InvalidInputError, match=r"cannot compare the labels' 'at' \(naive.*log's time.*assume_timezone"
    ):
        join_labels(flights_log, naive, on=["dest"], time_column="at")
    naive_log = flights_log.set_column(
        flights_log.schema.get_field_index("time"),
        "time",
        flights_log.column("time").cast(pa.timestamp("us")),
    )
    aware = labels_of(dest=["LAX"], at=pa.array([minutes(1)], TIME), label=[1])
    with pytest.raises(InvalidInputError, match=r"cannot compare the log's time \(naive"):
        join_labels(naive_log, aware, on=["dest"], time_column="at")


def test_other_bad_arguments(flights_log: pa.Table) -> None:
    labels = labels_of(request_id=["p1"], label=[1], at=["yesterday"], row=["0"])
    with pytest.raises(InvalidInputError, match="tolerance applies to the entity-key join only"):
        join_labels(flights_log, labels, tolerance=timedelta(minutes=1))
    with pytest.raises(InvalidInputError, match="time_column 'at' must hold timestamps, got string"):
        join_labels(flights_log, labels.drop(["row"]), time_column="at")
    with pytest.raises(InvalidInputError, match="row column must hold integers, got string"):
        join_labels(flights_log, labels)
    with pytest.raises(InvalidInputError, match="label column 'prediction' would clash"):
        join_labels(flights_log, labels_of(request_id=["p1"], prediction=[1]), label="prediction")
    with pytest.raises(InvalidInputError, match=r"the log lacks column\(s\) row"):
        join_labels(flights_log.drop(["row"]), labels.drop(["row", "at"]))
    entity = labels_of(dest=["LAX"], at=pa.array([minutes(1)], TIME), label=[1])
    with pytest.raises(InvalidInputError, match="tolerance must be a timedelta >= 0"):
        join_labels(flights_log, entity, on=["dest"], time_column="at", tolerance=timedelta(minutes=-1))
