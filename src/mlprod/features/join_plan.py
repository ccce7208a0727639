"""Which join ``method="auto"`` gives a feature view with a TTL: the one with the lower estimated cost.

Without a TTL the in-memory join always wins (the ASOF JOIN sorts both sides). With one, the DuckDB
query is an equi-join on the keys and a TTL-wide time bucket: its work grows with the source rows,
the distinct keys (its hash table) and the (entity row, source row) pairs that meet in a bucket. The
in-memory join's grows with the source rows (more when its times must be ranked: microseconds over
months beside many key codes), the distinct keys and the values it finds. A composite key costs both
more. Nanosecond times cost the DuckDB query about three times as much (128-bit buckets, and naive
ones are cast to ``TIMESTAMPTZ_NS`` through ICU), the in-memory join nothing more. The estimate
counts the entity rows' distinct keys, the sum of their squared counts (so that skewed popularity
counts its pairs) and looks at the unit of the first entity times.

The constants are CPU-seconds per million, measured with ``bench/feature_store.py --matrix`` and
in-process runs (1M entity x 5M feature rows and 500,000 x 2M: integer, composite and 1M keys; s
and µs times; TTLs of 2 h and 3 d) and checked again on every shape of the matrix once naive times
were no longer cast through ICU (``tests/features/test_join_plan.py``); they only have to order the
two joins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from mlprod.features.latest_rows import BLOCK_ROWS
from mlprod.features.sources import quote
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import duckdb
else:
    duckdb = lazy_module("duckdb")

_MILLION = 1e6
_SQL_PER_SOURCE_ROW, _SQL_PER_ENTITY_ROW, _SQL_PER_PAIR, _SQL_PER_KEY = 0.3, 0.5, 1.33, 0.4
_MEM_PER_SOURCE_ROW, _MEM_PER_ENTITY_ROW, _MEM_PER_RANKED_ROW, _MEM_PER_KEY = 0.25, 0.4, 0.09, 0.78
_MEM_PER_FOUND = 1.6
_COMPOSITE = 1.6  # both joins, per extra key column
_SQL_NANOSECONDS = 3.0  # 3.39 / 1.13 CPU-s for the DuckDB query on 500,000 x 2M rows, ns against µs
_SAMPLE = 4096  # source times looked at for their unit
_SAMPLE_FROM, _SAMPLED = 100_000, 0.1  # entity rows past which a tenth of them is grouped by key
_STEPS_US = (86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000, 1_000, 1)


@dataclass(frozen=True)
class Shape:
    """What the estimate needs: row counts, distinct entity keys, the sum of squared entity rows per
    key, the entity times' span and the source times' unit (µs), how many key columns, and whether
    times are compared as nanoseconds."""

    entity_rows: int
    source_rows: int
    keys: int
    squared: int
    span_us: int
    step_us: int
    key_columns: int
    nanoseconds: bool = False  # whether the join compares times as nanoseconds

    def pairs(self, ttl_us: int) -> float:
        """Pairs meeting in the TTL join's buckets (a source row joins two), as if each key had
        source rows in proportion to its entity rows."""
        per_entity_row = self.source_rows / max(self.entity_rows, 1)
        return self.squared * per_entity_row * min(1.0, 2 * ttl_us / max(self.span_us, 1))

    def ranked(self) -> bool:
        """Whether the in-memory join's words leave too few bits for the times in their unit."""
        code_bits = (self.keys + 1).bit_length()
        row_bits = (BLOCK_ROWS - 1).bit_length()
        return (self.span_us // self.step_us).bit_length() > 64 - code_bits - row_bits


def in_memory_is_cheaper(shape: Shape, ttl: timedelta | None) -> bool:
    """Whether the in-memory join's estimated cost is at most the DuckDB query's."""
    if ttl is None:
        return True
    ttl_us = ttl // timedelta(microseconds=1)
    composite = _COMPOSITE ** (shape.key_columns - 1)
    source, entities, keys = shape.source_rows, shape.entity_rows, shape.keys
    pairs = shape.pairs(ttl_us)
    sql = _SQL_PER_SOURCE_ROW * source + _SQL_PER_ENTITY_ROW * entities + _SQL_PER_KEY * keys
    sql = (sql * composite + _SQL_PER_PAIR * pairs) * (_SQL_NANOSECONDS if shape.nanoseconds else 1.0)
    found = entities * (1 - math.exp(-pairs / max(entities, 1) / 2))  # a value within the TTL
    memory = _MEM_PER_SOURCE_ROW * source + _MEM_PER_ENTITY_ROW * entities + _MEM_PER_KEY * keys
    memory += _MEM_PER_RANKED_ROW * source * shape.ranked()
    memory = memory * composite + _MEM_PER_FOUND * found
    return memory / _MILLION <= sql / _MILLION


def measure(
    conn: duckdb.DuckDBPyConnection,
    *,
    entities: str,
    entity_keys: list[str],
    event: str,
    source: str,
    nanoseconds: bool = False,
) -> Shape:
    """The shape of one view's join, cheaply (tens of ms for a million entity rows): a HyperLogLog
    count of the entity keys, their squared counts from a sample of ``_SAMPLED`` of the rows, a count
    of the source rows (Parquet metadata) and the unit of the first ``_SAMPLE`` entity times (in µs:
    ``nanoseconds`` says whether the joins compare them as nanoseconds)."""
    keys = ", ".join(quote(k) for k in entity_keys)
    ((rows, distinct, low, high),) = conn.execute(
        f"SELECT count(*), approx_count_distinct(hash({keys})), epoch_us(min({quote(event)})::TIMESTAMPTZ), "
        f"epoch_us(max({quote(event)})::TIMESTAMPTZ) FROM {quote(entities)}"
    ).fetchall()
    share = 1.0 if rows <= _SAMPLE_FROM else _SAMPLED
    sampled = f" USING SAMPLE {share * 100:g}% (system, 24)" if share < 1 else ""  # seeded: the same plan
    ((seen, squares),) = conn.execute(
        f"SELECT sum(n), sum(n * n) FROM (SELECT count(*) AS n FROM "
        f"(SELECT {keys} FROM {quote(entities)}{sampled}) GROUP BY {keys})"
    ).fetchall()
    # a row sampled with probability q: E[sum n'^2] = q^2 sum n^2 + q (1 - q) sum n
    squared = max(((squares or 0) - (1 - share) * (seen or 0)) / share**2, rows or 0)
    ((source_rows,),) = conn.execute(f"SELECT count(*) FROM {quote(source)}").fetchall()
    sample = conn.execute(  # the entity rows' first times: cheaper than a source's, and the same clock
        f"SELECT epoch_us({quote(event)}::TIMESTAMPTZ) FROM {quote(entities)} LIMIT {_SAMPLE}"
    ).fetchall()
    times = [t for (t,) in sample if t is not None]
    step = next((s for s in _STEPS_US if all((t - times[0]) % s == 0 for t in times)), 1) if times else 1
    return Shape(
        entity_rows=int(rows),
        source_rows=int(source_rows),
        keys=int(distinct),
        squared=int(squared),
        span_us=int(high - low) if high is not None and low is not None else 0,
        step_us=step,
        key_columns=len(entity_keys),
        nanoseconds=nanoseconds,
    )
