"""Windows over time-ordered rows: calendar spans (hour, day, week, month) or a fixed number of rows.

A ``Windowing`` says which window each row falls in; ``split`` cuts a batch into one slice per window,
so a window can be fed batch by batch and end up with exactly the rows it would get all at once.
Weeks start on Monday (ISO); all times are UTC.

Examples:
    >>> Windowing.parse("week")
    Windowing(by='week', rows=0)
    >>> Windowing.parse("5000")
    Windowing(by='count', rows=5000)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError

WindowBy = Literal["hour", "day", "week", "month", "count"]
CALENDAR: tuple[WindowBy, ...] = ("hour", "day", "week", "month")
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


@dataclass(frozen=True)
class Windowing:
    """Calendar windows (``by`` hour, day, week or month) or windows of ``rows`` consecutive rows."""

    by: WindowBy
    rows: int = 0

    @classmethod
    def parse(cls, text: str) -> Windowing:
        """``hour``, ``day``, ``week``, ``month``, or a whole number of rows per window."""
        text = text.strip().lower()
        if text in CALENDAR:
            return cls(text)
        if text.isascii() and text.isdigit() and int(text) > 0:
            return cls("count", int(text))
        raise InvalidInputError(
            f"window: {text!r} is not a window; use hour, day, week, month or a number of rows (e.g. 10000)"
        )

    def keys(self, times: pa.Array | pa.ChunkedArray, first_row: int) -> np.ndarray:
        """The window of each row: its start in µs since the epoch, or its index for count windows.

        ``first_row`` is the position of the batch's first row in the whole stream (count windows).
        """
        if self.by == "count":
            return (np.arange(len(times), dtype=np.int64) + first_row) // self.rows
        if pc.any(pc.is_null(times)).as_py():
            raise InvalidInputError("window: the time column has nulls; every row needs a time")
        utc = times.cast(pa.timestamp("us", tz="UTC"))
        floored = pc.floor_temporal(utc, unit=self.by, week_starts_monday=True)
        return np.asarray(floored.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)

    def span(self, key: int) -> tuple[datetime, datetime] | None:
        """The calendar start and end of a window key; ``None`` for count windows (their rows decide)."""
        if self.by == "count":
            return None
        start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=key)
        if self.by == "month":
            end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        else:
            end = start + _STEP[self.by]
        return start, end


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
