"""The unit a training frame compares times in: microseconds, or nanoseconds when a column has them.

DuckDB's ``TIMESTAMPTZ`` holds microseconds: casting a nanosecond time to it truncates, so a feature
row up to 1 µs after an event would compare as at the event and be used. When any time column of a
frame is ``TIMESTAMP_NS`` or ``TIMESTAMPTZ_NS`` and holds a time that is not a whole microsecond,
every time is compared as ``TIMESTAMPTZ_NS`` (microseconds convert exactly) and as integer nanoseconds
(``epoch_ns``), and the frame's event times come back as nanoseconds; otherwise as microseconds.
Nanosecond times span 1677-09-21 to 2262-04-11 (an int64 of nanoseconds).

Examples:
    >>> from datetime import timedelta
    >>> NANOSECONDS.ticks(timedelta(hours=1)), MICROSECONDS.ticks(timedelta(hours=1))
    (3600000000000, 3600000000)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
else:
    duckdb = lazy_module("duckdb")
    pa = lazy_module("pyarrow")


NANOSECOND_TYPES = ("TIMESTAMP_NS", "TIMESTAMPTZ_NS")
_AWARE_US = "TIMESTAMP WITH TIME ZONE"
_NAIVE = ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")


@dataclass(frozen=True)
class TimeUnit:
    """``sql_type`` to cast times to, ``epoch`` the DuckDB function giving them as integer ticks."""

    name: str  # "us" or "ns", as Arrow names it
    sql_type: str
    epoch: str
    per_microsecond: int

    def ticks(self, duration: timedelta) -> int:
        """``duration`` in this unit (a ``timedelta`` is whole microseconds, so this is exact)."""
        return duration // timedelta(microseconds=1) * self.per_microsecond

    def cast(self, expression: str, kind: str | None = None) -> str:
        """``expression`` (of DuckDB type ``kind`` when known) as this unit's ``sql_type``. A naive time
        is taken as UTC through its epoch: DuckDB's cast of a naive time to a zoned one goes through
        ICU's calendar, ten times the cost of the whole rest of a scan (infinite times keep the cast)."""
        if kind == self.sql_type or (kind == _AWARE_US and self is MICROSECONDS):
            return expression
        if kind in _NAIVE and self is MICROSECONDS:
            fast = f"make_timestamptz({self.ticks_of(expression, kind)})"
            return f"CASE WHEN isinf({expression}) THEN CAST({expression} AS {self.sql_type}) ELSE {fast} END"
        return f"CAST({expression} AS {self.sql_type})"

    def ticks_of(self, expression: str, kind: str | None = None) -> str:
        """``expression`` (of DuckDB type ``kind`` when known) as integer ticks of this unit, without a
        cast to a zoned type (null where the time is null or infinite)."""
        if kind is None:
            return f"{self.epoch}({self.cast(expression)})"
        if kind in NANOSECOND_TYPES:  # whole microseconds when the unit is µs
            return f"epoch_ns({expression})" if self is NANOSECONDS else f"(epoch_ns({expression}) // 1000)"
        return f"epoch_us({expression})" if self is MICROSECONDS else f"(epoch_us({expression}) * 1000)"

    def arrow(self) -> pa.DataType:
        return pa.timestamp(self.name, tz="UTC")


MICROSECONDS = TimeUnit("us", "TIMESTAMPTZ", "epoch_us", 1)
NANOSECONDS = TimeUnit("ns", "TIMESTAMPTZ_NS", "epoch_ns", 1000)


def time_unit(conn: duckdb.DuckDBPyConnection, columns: Iterable[tuple[str, str, str]]) -> TimeUnit:
    """Nanoseconds when a nanosecond column among these (relation, column, DuckDB type) has a time
    that is not a whole microsecond, else microseconds (exact then, and the frame keeps its types)."""
    for relation, column, kind in columns:
        if kind in NANOSECOND_TYPES:
            name = '"' + column.replace('"', '""') + '"'
            sql = f'SELECT bool_or(epoch_ns({name}) % 1000 <> 0) FROM "{relation}"'
            if conn.execute(sql).fetchall() == [(True,)]:
                return NANOSECONDS
    return MICROSECONDS
