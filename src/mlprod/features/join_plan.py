"""Which join ``method="auto"`` gives a feature view with a TTL, by a rule on the join's shape.

Without a TTL the in-memory join always wins (the ASOF JOIN sorts both sides). With one, DuckDB's
query is an equi-join on the keys and a TTL-wide time bucket that carries only the source rows'
numbers (the chosen rows' values are read afterwards, as the in-memory join reads them): its work
grows with the (entity row, source row) pairs that meet in a bucket, the in-memory join's (a sort and
a search per block of source rows) does not. So the in-memory join is taken
- for nanosecond times (DuckDB's buckets and casts are 128-bit: 2-3x its microsecond cost);
- when the pairs are many: at least ``_MANY_PAIRS`` per entity row (a long TTL, or skewed popularity:
  the rows of a popular key meet each other's);
- on small inputs (``small``), where either join takes a few hundredths of a second and the estimate's
  own queries would cost as much as any difference: then nothing is measured;
and DuckDB's query otherwise. The estimate counts the entity rows' distinct keys, the sum of their
squared counts (so that skewed popularity counts its pairs) and the entity times' span; nothing else
(distinct keys, time units) moves the choice, so nothing else is measured.

Measured in CPU-seconds with ``bench/feature_store.py --matrix`` shapes in-process (500,000 entity x
2M feature rows; 50,000 x 200,000 for 1,000 keys and Zipf), min of 3 alternating runs each on a
loaded host (in memory / DuckDB): µs 2 h 0.95 / 0.68, ms 1.13 / 0.88, s 0.96 / 0.93, 1 h 0.88 /
0.75, 1M keys 1.32 / 0.83, composite 1.02 / 0.66, string 1.64 / 0.91, aware 1.16 / 0.86; 3 d 0.93 /
0.96 (0.96 pairs per entity row), ns 1.13 / 2.46, Zipf 0.16 / 0.19 (4.9 pairs per row), 1,000 keys
0.12 / 0.13. Every shape but the ties sits far from the rule's thresholds
(``tests/features/test_join_plan.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from mlprod.features.sources import quote
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import duckdb
else:
    duckdb = lazy_module("duckdb")

_MANY_PAIRS = 0.5  # pairs per entity row in a TTL bucket from which the in-memory join wins
_SMALL_ROWS = 500_000  # entity and source rows together below which nothing is measured
_SAMPLE_FROM, _SAMPLED = 100_000, 0.1  # entity rows past which a tenth of them is grouped by key


@dataclass(frozen=True)
class Shape:
    """What the rule needs: row counts, the sum of squared entity rows per key, the entity times'
    span (µs) and whether times are compared as nanoseconds."""

    entity_rows: int
    source_rows: int
    squared: int
    span_us: int
    nanoseconds: bool = False  # whether the join compares times as nanoseconds

    def pairs(self, ttl_us: int) -> float:
        """Pairs meeting in the TTL join's buckets (a source row joins two), as if each key had
        source rows in proportion to its entity rows."""
        per_entity_row = self.source_rows / max(self.entity_rows, 1)
        return self.squared * per_entity_row * min(1.0, 2 * ttl_us / max(self.span_us, 1))


def small(entity_rows: int, source_rows: int) -> bool:
    """Whether the join is small enough to take in memory unmeasured (either join then takes a few
    hundredths of a second, about what the estimate's queries cost)."""
    return entity_rows + source_rows < _SMALL_ROWS


def in_memory_is_cheaper(shape: Shape, ttl: timedelta | None) -> bool:
    """Whether the in-memory join is the one to take (see the module docstring)."""
    if ttl is None or shape.nanoseconds or small(shape.entity_rows, shape.source_rows):
        return True
    return shape.pairs(ttl // timedelta(microseconds=1)) >= _MANY_PAIRS * shape.entity_rows


def measure(
    conn: duckdb.DuckDBPyConnection,
    *,
    entities: str,
    entity_keys: list[str],
    event: str,
    source: str,
    nanoseconds: bool = False,
) -> Shape:
    """The shape of one view's join, cheaply (a few ms for a million entity rows, two queries): the
    row counts (the source's from Parquet metadata) and the entity times' span, then the entity keys'
    squared counts from a sample of ``_SAMPLED`` of the rows (``nanoseconds`` says whether the joins
    compare times as nanoseconds)."""
    keys = ", ".join(quote(k) for k in entity_keys)
    ((rows, source_rows, low, high),) = conn.execute(
        f"SELECT count(*), (SELECT count(*) FROM {quote(source)}), "
        f"epoch_us(min({quote(event)})::TIMESTAMPTZ), epoch_us(max({quote(event)})::TIMESTAMPTZ) "
        f"FROM {quote(entities)}"
    ).fetchall()
    share = 1.0 if rows <= _SAMPLE_FROM else _SAMPLED
    sampled = f" USING SAMPLE {share * 100:g}% (system, 24)" if share < 1 else ""  # seeded: the same plan
    ((seen, squares),) = conn.execute(
        f"SELECT sum(n), sum(n * n) FROM (SELECT count(*) AS n FROM "
        f"(SELECT {keys} FROM {quote(entities)}{sampled}) GROUP BY {keys})"
    ).fetchall()
    # a row sampled with probability q: E[sum n'^2] = q^2 sum n^2 + q (1 - q) sum n
    squared = max(((squares or 0) - (1 - share) * (seen or 0)) / share**2, rows or 0)
    return Shape(
        entity_rows=int(rows),
        source_rows=int(source_rows),
        squared=int(squared),
        span_us=int(high - low) if high is not None and low is not None else 0,
        nanoseconds=nanoseconds,
    )
