"""``join_plan``: what it measures of a join, and which join its estimate picks on measured shapes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pyarrow as pa
import pytest

from mlprod.features import Entity, FeatureView, offline, training_frame
from mlprod.features.in_memory_join import join_in_memory
from mlprod.features.join_plan import Shape, in_memory_is_cheaper, measure, small
from mlprod.features.sources import connect

SECOND = 1_000_000
DAYS_180 = 180 * 86_400 * SECOND


def test_the_shape_is_measured_from_the_entity_keys_and_times() -> None:
    conn = connect()
    times = pa.array([0, 3_600 * SECOND, 7_200 * SECOND, 120 * SECOND], pa.int64()).cast(pa.timestamp("us"))
    conn.register("entities", pa.table({"k": [1, 1, 1, 2], "t": times}))
    conn.register("source", pa.table({"k": [1, 2, 3], "ts": times[:3]}))
    shape = measure(conn, entities="entities", entity_keys=["k"], event="t", source="source")
    assert shape == Shape(entity_rows=4, source_rows=3, squared=3 * 3 + 1, span_us=7_200 * SECOND)


def shape(*, entity_rows: int, source_rows: int, keys: int) -> Shape:
    """Uniform popularity over 180 days."""
    return Shape(
        entity_rows=entity_rows, source_rows=source_rows, squared=entity_rows**2 // keys, span_us=DAYS_180
    )


def test_skewed_keys_count_their_pairs() -> None:
    """Half the entity rows on one key: that key's rows meet many more source rows in a bucket."""
    uniform = shape(entity_rows=10**6, source_rows=5 * 10**6, keys=10**5)
    skewed = Shape(**{**uniform.__dict__, "squared": (5 * 10**5) ** 2 + uniform.squared // 2})
    assert skewed.pairs(3_600 * SECOND) > 1_000 * uniform.pairs(3_600 * SECOND)
    assert not in_memory_is_cheaper(uniform, timedelta(hours=1))
    assert in_memory_is_cheaper(skewed, timedelta(hours=1))


# The shapes ``join_plan.measure`` gives for each shape of ``bench/feature_store.py --matrix`` (500,000
# entity x 2M feature rows; 1k keys and Zipf at a tenth), and the join measured cheaper there, in
# CPU-seconds in memory / DuckDB (min of 3 alternating in-process runs, on a loaded host):
# (seconds, milliseconds and composite keys measure as the base shape does: neither moves the choice)
_MATRIX = Shape(entity_rows=500_000, source_rows=2_000_000, squared=3_607_159, span_us=15_551_998_851_703)
_TENTH = {"entity_rows": 50_000, "source_rows": 200_000}


@pytest.mark.parametrize(
    ("case", "ttl", "in_memory"),
    [
        pytest.param(_MATRIX, timedelta(hours=2), False, id="base µs 2h: 0.95 / 0.68"),
        pytest.param(_MATRIX, timedelta(hours=2), False, id="s: 0.96 / 0.93"),
        pytest.param(_MATRIX, timedelta(hours=2), False, id="ms: 1.13 / 0.88"),
        pytest.param(replace(_MATRIX, nanoseconds=True), timedelta(hours=2), True, id="ns: 1.13 / 2.46"),
        pytest.param(_MATRIX, timedelta(hours=1), False, id="ttl 1h: 0.88 / 0.75"),
        pytest.param(_MATRIX, timedelta(days=3), True, id="ttl 3d: 0.93 / 0.96"),
        pytest.param(_MATRIX, None, True, id="no ttl: ASOF sorts both sides"),
        pytest.param(
            replace(_MATRIX, squared=848_959),
            timedelta(hours=2),
            False,
            id="1M keys: 1.32 / 0.83",
        ),
        pytest.param(_MATRIX, timedelta(hours=2), False, id="composite: 1.02 / 0.66"),
        pytest.param(
            replace(_MATRIX, **_TENTH, squared=66_196_680),
            timedelta(hours=2),
            True,
            id="zipf: 0.16 / 0.19",
        ),
        pytest.param(
            replace(_MATRIX, **_TENTH, squared=2_500_000),
            timedelta(hours=2),
            True,
            id="1k keys: 0.12 / 0.13",
        ),
    ],
)
def test_the_estimate_picks_the_join_measured_cheaper_on_each_matrix_shape(
    case: Shape, ttl: timedelta | None, in_memory: bool
) -> None:
    """String keys and time-zone-aware times measure as the base shape does (1.64 / 0.91, 1.16 / 0.86)
    and give it the same shape."""
    assert in_memory_is_cheaper(case, ttl) is in_memory


@pytest.mark.parametrize(
    ("ttl", "factor", "in_memory"),
    [(timedelta(hours=2), 10, False), (timedelta(days=3), 2, True), (timedelta(days=3), 0.5, False)],
)
def test_the_rule_holds_with_margin(ttl: timedelta, factor: float, in_memory: bool) -> None:
    """The base shape's choice does not turn over when its pairs are ten times as many, nor the 3-day
    TTL's (a tie: 0.96 pairs per entity row) when they are twice as many; half as many turns it."""
    case = replace(_MATRIX, squared=int(_MATRIX.squared * factor))
    assert in_memory_is_cheaper(case, ttl) is in_memory


def test_small_inputs_are_joined_in_memory_unmeasured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``small`` rows the estimate's queries (tens of ms) are not run; past it they are."""
    measured: list[Shape] = []

    def recorded(*args: object, **kwargs: object) -> Shape:
        shape = measure(*args, **kwargs)  # type: ignore[arg-type]
        measured.append(shape)
        return shape

    joined: list[object] = []

    def in_memory(*args: object, **kwargs: object) -> object:
        joined.append(args)
        return join_in_memory(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(offline, "measure", recorded)
    monkeypatch.setattr(offline, "join_in_memory", in_memory)
    times = pa.array(range(0, 400 * SECOND, SECOND), pa.int64()).cast(pa.timestamp("us"))
    source = pa.table({"k": [i % 7 for i in range(400)], "ts": times, "v": [float(i) for i in range(400)]})
    view = FeatureView("v", Entity("e", ["k"]), source, ["v"], timestamp="ts", ttl="1h")
    entities = pa.table({"k": [3, 5], "event_time": times[-2:]})
    frame = training_frame(entities, [view])
    assert frame.column("v").to_pylist() == [395.0, 397.0]  # keys 3 and 5: 395 % 7 == 3, 397 % 7 == 5
    assert measured == []
    assert len(joined) == 1
    assert small(250_000, 249_999)
    assert not small(250_000, 250_000)


@pytest.mark.parametrize(("extra_ns", "measured"), [(0, [False]), (1, [])])
def test_nanosecond_times_are_joined_in_memory_unmeasured(
    monkeypatch: pytest.MonkeyPatch, extra_ns: int, measured: list[bool]
) -> None:
    """Nanosecond times that are not whole microseconds take the in-memory join without an estimate
    (DuckDB's join costs 2-3x there); whole microseconds stored as ns are measured as microseconds."""
    seen: list[Shape] = []

    def recorded(shape: Shape, ttl: timedelta | None) -> bool:
        seen.append(shape)
        return in_memory_is_cheaper(shape, ttl)

    monkeypatch.setattr(offline, "in_memory_is_cheaper", recorded)
    monkeypatch.setattr(offline, "small", lambda entity_rows, source_rows: False)
    base = 1_767_225_600 * 10**9  # 2026-01-01
    times = pa.array([base, base + 1_000 + extra_ns], pa.int64()).cast(pa.timestamp("ns"))
    source = pa.table({"k": [1, 1], "ts": times, "v": [1.0, 2.0]})
    view = FeatureView("v", Entity("e", ["k"]), source, ["v"], timestamp="ts", ttl="1h")
    frame = training_frame(pa.table({"k": [1], "event_time": times[1:]}), [view])
    assert frame.column("v").to_pylist() == [2.0]
    assert [shape.nanoseconds for shape in seen] == measured
    assert in_memory_is_cheaper(replace(_MATRIX, nanoseconds=True), timedelta(hours=2))
    assert not in_memory_is_cheaper(_MATRIX, timedelta(hours=2))
