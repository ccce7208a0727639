"""``join_plan``: what it measures of a join, and which join its estimate picks on measured shapes."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest

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
