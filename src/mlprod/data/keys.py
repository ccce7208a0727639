"""Primary keys: checks on incoming rows and the stable hash that assigns rows to buckets.

The bucket of a row must never change between versions, machines or library upgrades, so it comes
from a documented, seeded hash (pandas' SipHash of the key values, columns combined) of key values
normalised to a canonical type: integers and booleans as int64, times as int64 nanoseconds,
floats as float64, text as str.

Examples:
    >>> import pyarrow as pa
    >>> bucket_ids(pa.table({"id": [1, 2, 3]}), ("id",), 8).tolist()
    [2, 1, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlprod.data.columns import check_names
from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")


def check_key_columns(table: pa.Table, key: Sequence[str], *, what: str) -> None:
    """Raise unless the column names are usable, every key column is present, of a key-able type,
    and holds no nulls."""
    check_names(what, table.column_names)
    missing = [name for name in key if name not in table.column_names]
    if missing:
        raise InvalidInputError(
            f"{what}: key column(s) {', '.join(missing)} missing (columns: {', '.join(table.column_names)})"
        )
    for name in key:
        column = table.column(name)
        kind = column.type
        if not (
            pa.types.is_integer(kind)
            or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)
            or pa.types.is_temporal(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_dictionary(kind)
        ):
            raise InvalidInputError(
                f"{what}: key column {name!r} has type {kind}; use integers, text or times"
            )
        if column.null_count:
            raise InvalidInputError(f"{what}: key column {name!r} has {column.null_count:,} missing value(s)")


def check_unique_keys(table: pa.Table, key: Sequence[str], *, what: str) -> None:
    """Raise, showing a few duplicated keys, when two rows of ``table`` share a key."""
    if table.num_rows == 0:
        return
    counts = table.select(list(key)).group_by(list(key)).aggregate([([], "count_all")])
    duplicated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if duplicated.num_rows:
        examples = ", ".join(
            str({name: row[name] for name in key}) for row in duplicated.slice(0, 3).to_pylist()
        )
        raise InvalidInputError(
            f"{what}: {duplicated.num_rows:,} key(s) appear more than once, e.g. {examples}; "
            "a key must identify one row"
        )


def bucket_ids(table: pa.Table, key: Sequence[str], buckets: int) -> np.ndarray:
    """The bucket (0 … buckets-1) of every row of ``table``, from a stable hash of its key."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    frame = pd.DataFrame({name: _canonical(table.column(name)) for name in key})
    hashes = np.asarray(pd.util.hash_pandas_object(frame, index=False).to_numpy(), dtype=np.uint64)
    return np.asarray(hashes % np.uint64(buckets), dtype=np.int64)


def _canonical(column: pa.ChunkedArray) -> np.ndarray:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        nanos = column.cast(pa.timestamp("ns", tz=getattr(kind, "tz", None)))
        return np.asarray(nanos.cast(pa.int64()).to_numpy(), dtype=np.int64)
    if pa.types.is_temporal(kind):
        return np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    return np.asarray(column.cast(pa.large_string()).to_numpy(zero_copy_only=False), dtype=object)
