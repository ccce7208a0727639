"""The in-memory join's blocks searched on two threads give what one thread gives, and what DuckDB's
TTL join gives, on awkward data: ties on feature time (and full ties), null features, null keys, keys
absent from the feature table, nanosecond times and string keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlprod.features import Entity, FeatureView, in_memory_join, training_frame

SOURCE_ROWS, ENTITY_ROWS, KEYS = 3_000, 1_000, 40


def _awkward(tmp_path: Path, *, strings: bool, nanoseconds: bool) -> tuple[Path, pa.Table]:
    """A Parquet source and entity rows: times on a coarse grid (many ties on feature time), a tenth of
    the rows repeating an earlier row's (key, time, created) with other values, 5 % null features, 1 %
    null keys, a tenth of the entity rows on keys with no feature row."""
    rng = np.random.default_rng(11)
    step = 1_000_000_007 if nanoseconds else 60_000_000  # ns: times that are not whole microseconds
    ticks = rng.integers(0, 500, SOURCE_ROWS) * step
    created = ticks + rng.integers(0, 3, SOURCE_ROWS) * step
    keys = rng.integers(0, KEYS, SOURCE_ROWS)
    repeat = rng.choice(SOURCE_ROWS - 1, SOURCE_ROWS // 10, replace=False)
    ticks[repeat + 1], created[repeat + 1], keys[repeat + 1] = ticks[repeat], created[repeat], keys[repeat]
    unit = "ns" if nanoseconds else "us"
    origin = 1_767_225_600 * (10**9 if nanoseconds else 10**6)

    def times(values: np.ndarray) -> pa.Array:
        return pa.array(values + origin, pa.int64()).cast(pa.timestamp(unit))

    def key_column(values: np.ndarray, null: np.ndarray) -> pa.Array:
        if strings:
            return pa.array([f"k-{v}" for v in values], pa.string(), mask=null)
        return pa.array(values, pa.int64(), mask=null)

    source = pa.table(
        {
            "k": key_column(keys, rng.random(SOURCE_ROWS) < 0.01),
            "ts": times(ticks),
            "created": times(created),
            "v": pa.array(rng.normal(size=SOURCE_ROWS), mask=rng.random(SOURCE_ROWS) < 0.05),
            "w": pa.array(rng.integers(0, 100, SOURCE_ROWS), mask=rng.random(SOURCE_ROWS) < 0.05),
        }
    )
    path = tmp_path / "features.parquet"
    pq.write_table(source, path, row_group_size=700)
    entity_keys = rng.integers(0, KEYS + KEYS // 10, ENTITY_ROWS)  # past KEYS: no feature rows
    entities = pa.table(
        {
            "k": key_column(entity_keys, rng.random(ENTITY_ROWS) < 0.01),
            "event_time": times(rng.integers(0, 520, ENTITY_ROWS) * step + rng.integers(0, 2, ENTITY_ROWS)),
        }
    )
    return path, entities


@pytest.mark.parametrize("strings", [False, True], ids=["int keys", "string keys"])
@pytest.mark.parametrize("nanoseconds", [False, True], ids=["µs", "ns"])
@pytest.mark.parametrize("ttl", ["2h", None], ids=["ttl", "no ttl"])
@pytest.mark.parametrize("created_filter", [False, True], ids=["ties by created", "created filter"])
def test_two_threads_give_what_one_gives(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    strings: bool,
    nanoseconds: bool,
    ttl: str | None,
    created_filter: bool,
) -> None:
    path, entities = _awkward(tmp_path, strings=strings, nanoseconds=nanoseconds)
    view = FeatureView(
        "v", Entity("e", ["k"]), path, ["v", "w"], timestamp="ts", created="created", ttl=ttl,
        created_time_filter=created_filter,
    )  # fmt: skip
    monkeypatch.setattr(in_memory_join, "BLOCK_ROWS", 256)  # a dozen blocks, taken by both threads
    frames = {}
    for threads in (1, 2):
        monkeypatch.setattr(in_memory_join, "_THREADS", threads)
        frames[threads] = training_frame(entities, [view], method="in_memory")
    assert frames[2].equals(frames[1])
    assert frames[2].column("v").null_count < ENTITY_ROWS  # values were found
    if ttl is not None:  # DuckDB's TTL join from a Parquet file breaks full ties by row, as in memory
        assert training_frame(entities, [view], method="asof").equals(frames[2])
