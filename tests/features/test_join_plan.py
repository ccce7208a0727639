"""``join_plan``: what it measures of a join, and which join its estimate picks on measured shapes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pyarrow as pa
import pytest

from mlprod.features import Entity, FeatureView, offline, training_frame
from mlprod.features.join_plan import Shape, in_memory_is_cheaper, measure
from mlprod.features.sources import connect

SECOND = 1_000_000
DAYS_180 = 180 * 86_400 * SECOND


def test_the_shape_is_measured_from_the_entity_keys_and_times() -> None:
    conn = connect()
    times = pa.array([0, 3_600 * SECOND, 7_200 * SECOND, 120 * SECOND], pa.int64()).cast(pa.timestamp("us"))
    conn.register("entities", pa.table({"k": [1, 1, 1, 2], "t": times}))
    conn.register("source", pa.table({"k": [1, 2, 3], "ts": times[:3]}))
    shape = measure(conn, entities="entities", entity_keys=["k"], event="t", source="source")
    assert shape == Shape(
        entity_rows=4, source_rows=3, keys=2, squared=3 * 3 + 1, span_us=7_200 * SECOND,
        step_us=60 * SECOND, key_columns=1,
    )  # fmt: skip


def shape(*, entity_rows: int, source_rows: int, keys: int, step_us: int, key_columns: int = 1) -> Shape:
    """Uniform popularity over 180 days."""
    return Shape(
        entity_rows=entity_rows, source_rows=source_rows, keys=keys, squared=entity_rows**2 // keys,
        span_us=DAYS_180, step_us=step_us, key_columns=key_columns,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("case", "ttl", "in_memory"),
    [
        # CPU-seconds measured (in memory / DuckDB), 1M entity x 5M feature rows of 100,000 keys:
        (
            shape(entity_rows=10**6, source_rows=5 * 10**6, keys=10**5, step_us=SECOND),
            timedelta(hours=2),
            True,
        ),  # 1.65 / 2.0
        (
            shape(entity_rows=10**6, source_rows=5 * 10**6, keys=10**5, step_us=1),
            timedelta(days=3),
            True,
        ),  # 3.0 / 4.2
        (shape(entity_rows=10**6, source_rows=5 * 10**6, keys=10**5, step_us=1), None, True),  # ASOF sorts
        # 500,000 x 2M: a million keys (1.66 / 1.25), a composite key (1.6 / 1.45), µs times, 2 h TTL
        (
            shape(entity_rows=5 * 10**5, source_rows=2 * 10**6, keys=10**6, step_us=1),
            timedelta(hours=2),
            False,
        ),
        (
            shape(entity_rows=5 * 10**5, source_rows=2 * 10**6, keys=10**5, step_us=1, key_columns=2),
            timedelta(hours=2),
            False,
        ),
    ],
)
def test_the_estimate_picks_the_join_measured_cheaper(
    case: Shape, ttl: timedelta | None, in_memory: bool
) -> None:
    assert in_memory_is_cheaper(case, ttl) is in_memory


def test_skewed_keys_count_their_pairs() -> None:
    """Half the entity rows on one key: that key's rows meet many more source rows in a bucket."""
    uniform = shape(entity_rows=10**6, source_rows=5 * 10**6, keys=10**5, step_us=1)
    skewed = Shape(**{**uniform.__dict__, "squared": (5 * 10**5) ** 2 + uniform.squared // 2})
    assert skewed.pairs(3_600 * SECOND) > 1_000 * uniform.pairs(3_600 * SECOND)
    assert not in_memory_is_cheaper(uniform, timedelta(hours=1))
    assert in_memory_is_cheaper(skewed, timedelta(hours=1))


# The shapes ``join_plan.measure`` gives for each shape of ``bench/feature_store.py --matrix`` (500,000
# entity x 2M feature rows; 1k keys and Zipf at a tenth), and the join measured cheaper there, in
# CPU-seconds in memory / DuckDB (one in-process run each, naive times read as epoch ticks):
_MATRIX = Shape(
    entity_rows=500_000, source_rows=2_000_000, keys=107_819, squared=3_607_159, span_us=15_551_998_851_703,
    step_us=1, key_columns=1,
)  # fmt: skip
_TENTH = {"entity_rows": 50_000, "source_rows": 200_000}


@pytest.mark.parametrize(
    ("case", "ttl", "in_memory"),
    [
        pytest.param(_MATRIX, timedelta(hours=2), False, id="base µs 2h: 1.49 / 1.13"),
        pytest.param(replace(_MATRIX, step_us=SECOND), timedelta(hours=2), True, id="s: 0.97 / 1.11"),
        pytest.param(replace(_MATRIX, step_us=1_000), timedelta(hours=2), False, id="ms: 1.27 / 1.13"),
        pytest.param(replace(_MATRIX, nanoseconds=True), timedelta(hours=2), True, id="ns: 1.37 / 3.39"),
        pytest.param(_MATRIX, timedelta(hours=1), False, id="ttl 1h: 1.20 / 1.12"),
        pytest.param(_MATRIX, timedelta(days=3), True, id="ttl 3d: 1.29 / 1.54"),
        pytest.param(_MATRIX, None, True, id="no ttl: 1.37 / 2.71"),
        pytest.param(
            replace(_MATRIX, keys=402_459, squared=848_959),
            timedelta(hours=2),
            False,
            id="1M keys: 1.46/1.10",
        ),
        pytest.param(replace(_MATRIX, key_columns=2), timedelta(hours=2), False, id="composite: 1.33 / 1.18"),
        pytest.param(
            replace(_MATRIX, **_TENTH, keys=10_672, squared=66_196_680),
            timedelta(hours=2),
            True,
            id="zipf: 0.18/0.26",
        ),
    ],
)
def test_the_estimate_picks_the_join_measured_cheaper_on_each_matrix_shape(
    case: Shape, ttl: timedelta | None, in_memory: bool
) -> None:
    """String keys and time-zone-aware times measure as the base shape does (1.79 / 1.39, 1.20 / 1.11)
    and give it the same shape; 1,000 keys measure 0.18 / 0.18, either is right."""
    assert in_memory_is_cheaper(case, ttl) is in_memory


@pytest.mark.parametrize(("extra_ns", "nanoseconds"), [(0, False), (1, True)])
def test_the_frame_gives_the_estimate_the_unit_it_compares_times_in(
    monkeypatch: pytest.MonkeyPatch, extra_ns: int, nanoseconds: bool
) -> None:
    """Nanosecond times that are not whole microseconds reach the estimate as nanoseconds (the DuckDB
    join costs 3x there, so the in-memory join wins); whole microseconds stored as ns do not."""
    seen: list[Shape] = []

    def recorded(shape: Shape, ttl: timedelta | None) -> bool:
        seen.append(shape)
        return in_memory_is_cheaper(shape, ttl)

    monkeypatch.setattr(offline, "in_memory_is_cheaper", recorded)
    base = 1_767_225_600 * 10**9  # 2026-01-01
    times = pa.array([base, base + 1_000 + extra_ns], pa.int64()).cast(pa.timestamp("ns"))
    source = pa.table({"k": [1, 1], "ts": times, "v": [1.0, 2.0]})
    view = FeatureView("v", Entity("e", ["k"]), source, ["v"], timestamp="ts", ttl="1h")
    frame = training_frame(pa.table({"k": [1], "event_time": times[1:]}), [view])
    assert frame.column("v").to_pylist() == [2.0]
    assert [shape.nanoseconds for shape in seen] == [nanoseconds]
    assert in_memory_is_cheaper(replace(_MATRIX, nanoseconds=True), timedelta(hours=2))
    assert not in_memory_is_cheaper(_MATRIX, timedelta(hours=2))
