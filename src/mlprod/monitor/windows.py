"""Windows over rows: calendar spans, a fixed number of rows, a number of equal chunks, or a column's values.

A ``Windowing`` says which window each row falls in; ``split`` cuts a batch into one slice per window,
so a window can be fed batch by batch and end up with exactly the rows it would get all at once.
Calendar windows (hour, day, week, month, quarter, year) need a time column; weeks start on Monday
(ISO), quarters in January, April, July and October; all times are UTC. ``chunks:N`` needs the total
row count and ``by:COLUMN`` the column's distinct values before the first batch: ``resolved`` gives
them, so the keys of a row never depend on the batch it came in.

Examples:
    >>> Windowing.parse("week")
    Windowing(by='week', rows=0, chunks=0, column='', total=None, values=None)
    >>> Windowing.parse("5000").rows, Windowing.parse("rows:5000").rows
    (5000, 5000)
    >>> Windowing.parse("chunks:4").resolved(total=10).sizes()
    [3, 2, 3, 2]
    >>> Windowing.parse("by:batch").resolved(values=["b", "a"]).name(0)
    'batch a'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import WindowSpecError

WindowBy = Literal["hour", "day", "week", "month", "quarter", "year", "count", "chunks", "column"]
CALENDAR: tuple[WindowBy, ...] = ("hour", "day", "week", "month", "quarter", "year")
TIME = "time"
NULL_VALUE = "(null)"
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_SPECS = "hour, day, week, month, quarter, year, N or rows:N (rows per window), chunks:N or by:COLUMN"


@dataclass(frozen=True)
class Windowing:
    """Calendar windows, windows of ``rows`` consecutive rows, ``chunks`` equal chunks, or one window
    per value of ``column``. ``total`` (chunks) and ``values`` (by column) are set by ``resolved``."""

    by: WindowBy
    rows: int = 0
    chunks: int = 0
    column: str = ""
    total: int | None = None
    values: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Windowing:
        """``hour`` … ``year``, ``N`` or ``rows:N`` rows per window, ``chunks:N``, or ``by:COLUMN``."""
        spec = text.strip()
        unit, _, argument = spec.partition(":")
        unit = unit.strip().lower()
        if not _:
            if unit in CALENDAR:
                return cls(unit)
            if unit.lstrip("+-").isdigit():
                return cls("count", rows=_positive(unit, spec, "rows per window"))
        elif unit == "rows":
            return cls("count", rows=_positive(argument.strip(), spec, "rows per window"))
        elif unit == "chunks":
            return cls("chunks", chunks=_positive(argument.strip(), spec, "number of chunks"))
        elif unit == "by":
            if not argument.strip():
                raise WindowSpecError(f"window {spec!r}: by: needs a column name, e.g. by:batch_id")
            return cls("column", column=argument.strip())
        raise WindowSpecError(f"window {spec!r} is not a window; use {_SPECS} (e.g. week, 10000, chunks:10)")

    @property
    def calendar(self) -> bool:
        return self.by in CALENDAR

    @property
    def description(self) -> str:
        """What the windows are, as reports name them: ``week``, ``1000 rows``, ``10 chunks``, ``by id``."""
        if self.by == "count":
            return f"{self.rows} rows"
        if self.by == "chunks":
            return f"{self.chunks} chunks"
        if self.by == "column":
            return f"by {self.column}"
        return self.by

    def resolved(
        self, *, total: int | None = None, values: Sequence[Any] | pa.Array | pa.ChunkedArray | None = None
    ) -> Windowing:
        """This windowing with the row count (chunks) or the column's distinct values (by column) known.

        ``values`` may come in any order and repeat; windows follow their sorted order, nulls last,
        each named by the value as Arrow writes it as text (the way rows are matched to it).
        """
        if self.by == "chunks":
            if total is None or total < 1:
                raise WindowSpecError(f"window chunks:{self.chunks}: there are no rows to cut into chunks")
            return replace(self, total=total)
        if self.by == "column":
            array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(list(values or ()))
            if pa.types.is_dictionary(array.type):
                array = array.cast(array.type.value_type)
            unique = pc.unique(array)
            present = pc.drop_null(unique)
            try:
                names = pc.cast(present.take(pc.array_sort_indices(present)), pa.string()).to_pylist()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise WindowSpecError(
                    f"window by:{self.column}: the column's values cannot be sorted: {exc}"
                ) from exc
            return replace(self, values=(*names, *((NULL_VALUE,) if unique.null_count else ())))
        return self

    def sizes(self) -> list[int]:
        """The row count of each chunk (``chunks:N`` resolved): as equal as whole rows allow."""
        bounds = [self._first_row(i) for i in range(self.chunks + 1)]
        return [b - a for a, b in pairwise(bounds)]

    def keys(self, times: pa.Array | pa.ChunkedArray, first_row: int) -> np.ndarray:
        """The window of each row: its start in µs since the epoch (calendar) or the window's index.

        ``times`` is the time column (calendar windows) or the windowing column (by column; any
        array of the rows otherwise); ``first_row`` is the position of the batch's first row in the
        whole stream (row and chunk windows).
        """
        positions = np.arange(len(times), dtype=np.int64) + first_row
        if self.by == "count":
            return positions // self.rows
        if self.by == "chunks":
            total = self._total()
            if first_row + len(times) > total:
                raise WindowSpecError(
                    f"window chunks:{self.chunks}: row {first_row + len(times):,} is past the "
                    f"{total:,} rows counted first"
                )
            return (positions * self.chunks) // total
        if self.by == "column":
            return self._value_keys(times)
        if pc.any(pc.is_null(times)).as_py():
            raise WindowSpecError("window: the time column has nulls; every row needs a time")
        utc = times.cast(pa.timestamp("us", tz="UTC"))
        floored = pc.floor_temporal(utc, unit=self.by, week_starts_monday=True)
        return np.asarray(floored.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)

    def keys_of(self, batch: pa.Table, first_row: int) -> np.ndarray:
        """``keys`` of a batch's rows, read from its time column or its windowing column."""
        if self.by == "column":
            if self.column not in batch.column_names:
                raise WindowSpecError(
                    f"window by:{self.column}: no column {self.column!r}; columns: {batch.column_names}"
                )
            return self.keys(batch.column(self.column), first_row)
        if self.calendar and TIME not in batch.column_names:
            raise WindowSpecError(f"window {self.by}: calendar windows need a time column")
        return self.keys(
            batch.column(TIME) if TIME in batch.column_names else pa.nulls(batch.num_rows), first_row
        )

    def span(self, key: int) -> tuple[datetime, datetime] | None:
        """The calendar start and end of a window key; ``None`` for other windows (their rows decide)."""
        if not self.calendar:
            return None
        start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=key)
        if self.by in _MONTHS:
            month = start.month - 1 + _MONTHS[self.by]
            end = start.replace(year=start.year + month // 12, month=month % 12 + 1)
        else:
            end = start + _STEP[self.by]
        return start, end

    def name(self, key: int) -> str:
        """A window's name when its span does not say it: the value (by column) or the row range."""
        if self.by == "column":
            return f"{self.column} {self._values()[key]}"
        if self.by == "count":
            return f"rows {key * self.rows:,}-{(key + 1) * self.rows - 1:,}"
        if self.by == "chunks":
            first, stop = self._first_row(key), self._first_row(key + 1)
            return f"chunk {key + 1}/{self.chunks} (rows {first:,}-{stop - 1:,})"
        return ""

    def expected_rows(self, key: int) -> int | None:
        """How many rows a whole window holds (row and chunk windows); ``None`` when the calendar decides."""
        if self.by == "count":
            return self.rows
        if self.by == "chunks":
            return self.sizes()[key]
        return None

    def _first_row(self, chunk: int) -> int:
        """The position of a chunk's first row: the smallest p with p * chunks // total == chunk."""
        return -(-chunk * self._total() // self.chunks)

    def _total(self) -> int:
        if self.total is None:
            raise WindowSpecError(
                f"window chunks:{self.chunks} needs the total row count first; "
                "use row windows (rows:N) when the rows are streamed"
            )
        return self.total

    def _values(self) -> tuple[str, ...]:
        if self.values is None:
            raise WindowSpecError(f"window by:{self.column} needs the column's values first")
        return self.values

    def _value_keys(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        values = self._values()
        try:
            text = pc.cast(column, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise WindowSpecError(
                f"window by:{self.column}: the column's values do not read as text: {exc}"
            ) from exc
        index = pc.index_in(text, value_set=pa.array(values, pa.string()))
        if NULL_VALUE in values:
            index = pc.if_else(pc.is_null(text), values.index(NULL_VALUE), index)
        if pc.any(pc.is_null(index)).as_py():
            unknown = pc.filter(text, pc.is_null(index)).slice(0, 1).to_pylist()
            raise WindowSpecError(
                f"window by:{self.column}: value {unknown[0]!r} was not among the values listed first"
            )
        return np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)


def _positive(number: str, spec: str, what: str) -> int:
    if not (number.lstrip("+-").isascii() and number.lstrip("+-").isdigit()):
        raise WindowSpecError(f"window {spec!r}: {number!r} is not a whole number ({what})")
    value = int(number)
    if value <= 0:
        raise WindowSpecError(f"window {spec!r}: the {what} must be at least 1, got {value}")
    return value


def split(batch: pa.Table, keys: np.ndarray) -> Iterator[tuple[int, pa.Table]]:
    """One slice of ``batch`` per window key, in key order; rows keep their order inside a slice."""
    if len(keys) == 0:
        return
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(keys)], strict=True):
        indices = pa.array(order[start:stop])
        yield int(sorted_keys[start]), batch.take(indices)
