"""Integer codes for entity keys, so that a join on keys becomes a comparison of integers.

The distinct keys of the entity rows get codes 0..n-1; any other key (a source row no entity row
asks about) gets -1 and is dropped at once. One column of integers whose range is at most 64 times
its number of distinct values (or 2**20) is coded through a lookup table (its distinct values found
with a bitmap over the range when that is at most 8 times the rows, else by hashing); any other
column by Arrow's hash lookup (``index_in``). Several key columns are coded one by one, combined, and the
combinations present among the entity rows numbered again.

Examples:
    >>> import pyarrow as pa
    >>> coder, codes = KeyCoder.of([pa.array([7, 3, 7, None])])
    >>> codes.tolist(), coder.codes([pa.array([3, 5, 7])]).tolist()
    ([1, 0, 1, -1], [0, -1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from mlprod.features.latest_rows import NO_ROW, TooWideError
from mlprod.features.scratch import Scratch, array_of
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

_TABLE_FLOOR = 1 << 20  # a lookup table this long (8 MB) is always fine
Column: TypeAlias = "pa.Array | pa.ChunkedArray"


class KeyCoder:
    """Codes for the distinct entity keys; ``codes`` codes any other rows' keys the same way."""

    def __init__(self, columns: Sequence[_ColumnCoder], combined: np.ndarray | None) -> None:
        self._columns = columns
        self._combined = combined  # several columns: the combinations present, sorted
        self._table: np.ndarray | None = None  # and, when their range is small, each one's code by value
        space = int(np.prod([max(c.size, 1) for c in columns], dtype=object))
        if combined is not None and len(combined) and space <= max(64 * len(combined), _TABLE_FLOOR):
            # a lookup, not a binary search of a million random values a block
            self._table = np.full(space, NO_ROW, dtype=np.int64)
            self._table[combined] = np.arange(len(combined))

    @staticmethod
    def of(keys: Sequence[Column]) -> tuple[KeyCoder, np.ndarray]:
        """The coder of these entity keys (one array per key column), and their codes."""
        columns = [_ColumnCoder.of(column) for column in keys]
        if len(columns) == 1:
            coder = KeyCoder(columns, None)
            return coder, coder.codes(keys)
        combined = KeyCoder(columns, None)._combine(keys)
        coder = KeyCoder(columns, _sorted_distinct(combined[combined >= 0]))
        return coder, coder._dense(combined)

    @property
    def count(self) -> int:
        """How many distinct entity keys there are: their codes are ``0 .. count - 1``."""
        return self._columns[0].size if self._combined is None else len(self._combined)

    def codes(self, keys: Sequence[Column], scratch: Scratch | None = None) -> np.ndarray:
        """The codes of these keys (one array per key column; -1: null, or no entity row's key), in
        ``scratch``'s arrays when given."""
        if self._combined is None:
            return self._columns[0].codes(keys[0], scratch)
        return self._dense(self._combine(keys))

    def _combine(self, keys: Sequence[Column]) -> np.ndarray:
        combined = np.zeros(len(keys[0]), dtype=np.int64)
        size = 1
        for values, column in zip(keys, self._columns, strict=True):
            size *= max(column.size, 1)
            if size >= 1 << 62:
                raise TooWideError("the combined key codes do not fit in 64 bits")
            codes = column.codes(values)
            combined = np.where((combined < 0) | (codes < 0), NO_ROW, combined * column.size + codes)
        return combined

    def _dense(self, combined: np.ndarray) -> np.ndarray:
        assert self._combined is not None
        if len(self._combined) == 0:
            return np.full(len(combined), NO_ROW, dtype=np.int64)
        if self._table is not None:  # combined codes are -1 or in range
            codes: np.ndarray = np.take(self._table, combined, mode="clip")
            codes[combined < 0] = NO_ROW
            return codes
        at = np.minimum(np.searchsorted(self._combined, combined), len(self._combined) - 1)
        return np.where((combined >= 0) & (self._combined[at] == combined), at, NO_ROW)


class _ColumnCoder:
    """The distinct values of one entity key column, numbered."""

    def __init__(self, distinct: pa.Array, low: int | None, table: np.ndarray | None) -> None:
        self._distinct = distinct
        self._low, self._table = low, table
        self.size = len(distinct)

    @staticmethod
    def of(values: Column) -> _ColumnCoder:
        numbers = _marked_distinct(values)
        if numbers is not None:
            distinct = pa.array(numbers, type=pa.int64()).cast(values.type)
        else:
            distinct = pc.unique(pc.drop_null(values))
            if isinstance(distinct, pa.ChunkedArray):
                distinct = distinct.combine_chunks()
            if not pa.types.is_integer(distinct.type) or len(distinct) == 0:
                return _ColumnCoder(distinct, None, None)
            numbers = distinct.to_numpy().astype(np.int64)
        low, high = int(numbers.min()), int(numbers.max())
        if high - low >= max(64 * len(numbers), _TABLE_FLOOR):
            return _ColumnCoder(distinct, None, None)
        table = np.full(high - low + 1, NO_ROW, dtype=np.int64)
        table[numbers - low] = np.arange(len(numbers))
        return _ColumnCoder(distinct, low, table)

    def codes(self, values: Column, scratch: Scratch | None = None) -> np.ndarray:
        """Each value's code (-1: null, or not among the entity rows' values)."""
        if values.type != self._distinct.type:
            values = values.cast(self._distinct.type)
        if self._table is None or self._low is None:
            found = pc.fill_null(pc.index_in(values, value_set=self._distinct), NO_ROW)
            return np.asarray(numpy_of(found), dtype=np.int64)
        bounds = pc.min_max(values)
        smallest, largest = bounds["min"].as_py(), bounds["max"].as_py()
        if smallest is None:
            return np.full(len(values), NO_ROW, dtype=np.int64)
        present = pc.fill_null(values, bounds["min"]) if values.null_count else values  # nulls: masked below
        offsets = array_of(scratch, "key offsets", len(values), np.int64)
        np.subtract(np.asarray(numpy_of(present, offsets), dtype=np.int64), self._low, out=offsets)
        inside: np.ndarray | None = None
        if smallest < self._low or largest >= self._low + len(self._table):
            inside = offsets.view(np.uint64) < len(self._table)
            offsets[~inside] = 0
        codes: np.ndarray = np.take(
            self._table, offsets, out=array_of(scratch, "key codes", len(values), np.int64), mode="clip"
        )  # every offset is in range here; "raise" would copy through a buffer
        if inside is not None:
            codes[~inside] = NO_ROW
        if values.null_count:
            codes[numpy_of(values.is_null())] = NO_ROW
        return codes


def _marked_distinct(values: Column) -> np.ndarray | None:
    """The distinct values of an integer column whose range is at most 8 times its length (or
    ``_TABLE_FLOOR``), ascending: marked in a bitmap over the range, faster than hashing them. None for
    any other column."""
    if not pa.types.is_integer(values.type) or values.null_count == len(values):
        return None
    bounds = pc.min_max(values)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if high - low >= max(8 * len(values), _TABLE_FLOOR) or high >= 1 << 63:
        return None
    present = np.zeros(high - low + 1, dtype=bool)
    numbers = numpy_of(pc.drop_null(values) if values.null_count else values)
    present[np.asarray(numbers, dtype=np.int64) - low] = True
    marked: np.ndarray = np.flatnonzero(present) + low
    return marked


def numpy_of(array: Column, out: np.ndarray | None = None) -> np.ndarray:
    """An Arrow array (or chunked array) as one numpy array: chunks of numbers without nulls are
    copied into ``out`` when it is of their type and long enough, others are combined."""
    if isinstance(array, pa.ChunkedArray):
        if out is not None and _fits_in(array, out):
            return np.concatenate([chunk.to_numpy() for chunk in array.chunks], out=out[: len(array)])
        array = array.combine_chunks()
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _fits_in(array: pa.ChunkedArray, out: np.ndarray) -> bool:
    return (
        array.num_chunks > 1
        and array.null_count == 0
        and len(out) >= len(array)
        and (pa.types.is_integer(array.type) or pa.types.is_floating(array.type))
        and array.type == pa.from_numpy_dtype(out.dtype)
    )


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``, by a sort: numpy 2.3+ hashes first, many times slower on a million codes."""
    ascending = np.sort(values)
    new = np.empty(len(ascending), dtype=bool)
    new[:1] = True
    np.not_equal(ascending[1:], ascending[:-1], out=new[1:])
    return ascending[new]
