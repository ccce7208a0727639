"""Nanosecond times stay exact: a feature row 1 ns after an event is never used, by either join.

DuckDB's ``TIMESTAMPTZ`` holds microseconds; nanosecond columns used to be refused when time-zone
aware (``must be a timestamp, not TIMESTAMPTZ_NS``) and truncated when naive, so a value up to 1 µs
after the event was taken. Times here sit a few nanoseconds apart inside one microsecond, and on both
sides of microsecond and TTL boundaries.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlprod.features import Aggregation, AggregationView, Entity, FeatureView, training_frame

BASE_NS = 1_735_689_600_000_000_000 + 123_000  # 2025-01-01T00:00:00.000123Z
METHODS = ["in_memory", "asof", "auto"]
USER = Entity(name="user", keys=["user"])


def ns_times(offsets: list[int | None], *, aware: bool) -> pa.Array:
    values = pa.array([None if o is None else BASE_NS + o for o in offsets], pa.int64())
    return values.cast(pa.timestamp("ns", tz="UTC" if aware else None))


def view(
    source: pa.Table | pd.DataFrame, *, ttl: str | timedelta | None = None, created_filter: bool = True
) -> FeatureView:
    return FeatureView(
        name="clicks",
        entity=USER,
        source=source,
        features=["value"],
        timestamp="ts",
        created="created"
        if "created" in list(source.schema.names if isinstance(source, pa.Table) else source)
        else None,
        ttl=ttl,
        created_time_filter=created_filter,
    )


@pytest.mark.parametrize("aware", [True, False])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ttl", [None, "1h"])
def test_a_value_one_nanosecond_after_the_event_is_not_used(
    aware: bool, method: Any, ttl: str | None
) -> None:
    source = pa.table(
        {
            "user": [1, 1, 1, 2, 2],
            "ts": ns_times([499, 500, 501, 400, 401], aware=aware),
            "created": ns_times([499, 500, 501, 400, 501], aware=aware),
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    entities = pa.table({"user": [1, 1, 2, 2], "event_time": ns_times([500, 499, 500, 401], aware=aware)})
    frame = training_frame(entities, [view(source, ttl=ttl)], method=method)
    # user 2 at 500 ns: the row at 401 ns was created at 501 ns, after the event: the one at 400 ns wins
    assert frame.column("value").to_pylist() == [2.0, 1.0, 4.0, 4.0]
    assert frame.column("event_time").type == pa.timestamp("ns", tz="UTC")
    assert frame.column("event_time").cast(pa.int64()).to_pylist() == [
        BASE_NS + o for o in (500, 499, 500, 401)
    ]


@pytest.mark.parametrize("method", METHODS)
def test_a_ttl_expires_to_the_nanosecond(method: Any) -> None:
    hour = 3_600_000_000_000
    source = pa.table({"user": [1, 2], "ts": ns_times([0, 1], aware=True), "value": [1.0, 2.0]})
    entities = pa.table({"user": [1, 2], "event_time": ns_times([hour, hour + 2], aware=True)})
    frame = training_frame(entities, [view(source, ttl="1h")], method=method)
    assert frame.column("value").to_pylist() == [1.0, None]  # 1 h exactly: kept; 1 h + 1 ns: expired


def test_microsecond_entity_rows_meet_a_nanosecond_source_exactly() -> None:
    source = pa.table({"user": [1, 1], "ts": ns_times([-123_001, -122_999], aware=True), "value": [1.0, 2.0]})
    event = (
        pa.array([BASE_NS - 123_000], pa.int64())
        .cast(pa.timestamp("ns", tz="UTC"))
        .cast(pa.timestamp("us", tz="UTC"))
    )
    entities = pa.table({"user": [1], "event_time": event})
    for method in METHODS:
        assert training_frame(entities, [view(source)], method=method).column("value").to_pylist() == [1.0]


def test_an_aggregation_window_ends_to_the_nanosecond() -> None:
    second = 1_000_000_000
    source = pa.table(
        {"user": [1, 1, 1, 1], "ts": ns_times([0, 1, second, second + 1], aware=True), "value": [1, 2, 4, 8]}
    )
    counted = AggregationView(
        name="recent", entity=USER, source=source, timestamp="ts",
        aggregations=[Aggregation("sum", "value", "1s", name="total")],
    )  # fmt: skip
    entities = pa.table({"user": [1], "event_time": ns_times([second], aware=True)})
    # (event - 1 s, event]: the row at 0 ns is exactly 1 s back and out; the one 1 ns after the event too
    assert training_frame(entities, [counted]).column("total").to_pylist() == [6]


rows = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2_400), st.one_of(st.none(), st.integers(-3, 3))),
    max_size=12,
)


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    source_rows=rows,
    events=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2_400)), min_size=1, max_size=8),
    ttl_us=st.sampled_from([None, 1, 2]),
    created_filter=st.booleans(),
    aware=st.booleans(),
)
def test_no_value_after_the_event_is_ever_used(
    source_rows: list[tuple[int, int, int | None]],
    events: list[tuple[int, int]],
    ttl_us: int | None,
    created_filter: bool,
    aware: bool,
) -> None:
    """Against a loop over nanosecond integers: the greatest (ts, created) with ``ts <= event``,
    ``event - ttl <= ts`` and, with the filter, ``created <= event``; either join gives it."""
    seen: set[tuple[int, int, int]] = set()
    kept = []
    for user, ts, offset in source_rows:
        created = ts if offset is None else ts + offset
        if (user, ts, created) not in seen:  # a full tie with another value has no specified winner
            seen.add((user, ts, created))
            kept.append((user, ts, offset, float(len(kept))))
    source = pa.table(
        {
            "user": pa.array([r[0] for r in kept], pa.int64()),
            "ts": ns_times([r[1] for r in kept], aware=aware),
            "created": ns_times([None if r[2] is None else r[1] + r[2] for r in kept], aware=aware),
            "value": pa.array([r[3] for r in kept], pa.float64()),
        }
    )
    entities = pa.table(
        {
            "user": pa.array([e[0] for e in events], pa.int64()),
            "event_time": ns_times([e[1] for e in events], aware=aware),
        }
    )
    expected = []
    for user, event in events:
        candidates = [
            ((ts, ts if offset is None else ts + offset), value)
            for u, ts, offset, value in kept
            if u == user
            and ts <= event
            and (ttl_us is None or ts >= event - ttl_us * 1000)
            and (not created_filter or (ts if offset is None else ts + offset) <= event)
        ]
        expected.append(max(candidates)[1] if candidates else None)
    ttl = None if ttl_us is None else timedelta(microseconds=ttl_us)
    for method in METHODS:
        frame = training_frame(
            entities, [view(source, ttl=ttl, created_filter=created_filter)], method=method
        )
        assert frame.column("value").to_pylist() == expected, method


def test_pandas_nanosecond_frames_keep_their_nanoseconds() -> None:
    source = pd.DataFrame(
        {"user": [1, 1], "ts": pd.to_datetime([BASE_NS + 1, BASE_NS + 3], utc=True), "value": [1.0, 2.0]}
    )
    entities = pd.DataFrame({"user": [1], "event_time": pd.to_datetime([BASE_NS + 2], utc=True)})
    for method in METHODS:
        assert training_frame(entities, [view(pa.Table.from_pandas(source))], method=method).column(
            "value"
        ).to_pylist() == [1.0]
        assert training_frame(entities, [view(source)], method=method).column("value").to_pylist() == [1.0]
