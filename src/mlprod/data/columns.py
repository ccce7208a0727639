"""Column names and types a versioned table can hold, checked before anything is stored.

Names: DuckDB, which compares versions and joins features, binds identifiers case-insensitively, so
``Price`` and ``price`` in one relation are one column to it and one column's values end up in the
other; names differing only in Unicode form (NFC ``é`` vs NFD ``e`` + combining accent) print the
same and are told apart by no one. Both are refused, naming the two columns, rather than stored wrong.

Types: what survives Parquet and DuckDB unchanged: integers, float32/64, decimals up to 128 bits,
text, binary, booleans, dates, times of day and timestamps. Anything else is refused with the type to
use instead.

Examples:
    >>> name_clashes(["id", "Price", "price"])
    [('Price', 'price')]
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

MAX_TEXT_BYTES = 2**31 - 1
"""Most bytes of text (or binary) one column may carry in one commit: Arrow's 32-bit string offsets
overflow past it when the rows are bucketed. Commit larger data in several batches."""


def folded(name: str) -> str:
    """The form under which two column names count as the same (canonical caseless match)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())


def name_clashes(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of distinct names that differ only by case or Unicode normalization, first seen first."""
    seen: dict[str, str] = {}
    clashes = []
    for name in names:
        first = seen.setdefault(folded(name), name)
        if first != name:
            clashes.append((first, name))
    return clashes


def check_names(what: str, names: Iterable[str]) -> None:
    """Raise on an empty or duplicated name, or two names that differ only by case or Unicode form."""
    names = list(names)
    if "" in names:
        raise InvalidInputError(
            f"{what}: a column has an empty name (columns: {', '.join(map(repr, names))}); name every column"
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InvalidInputError(
            f"{what}: column name(s) {', '.join(map(repr, duplicated))} appear more than once "
            f"(columns: {', '.join(names)}); give every column its own name"
        )
    for first, second in name_clashes(names):
        how = (
            "by case"
            if unicodedata.normalize("NFC", first) != unicodedata.normalize("NFC", second)
            else ("in Unicode normalization (NFC vs NFD)")
        )
        raise InvalidInputError(
            f"{what}: columns {first!r} and {second!r} differ only {how}; SQL engines (DuckDB) take them "
            "for one column, so mlprod refuses such names: rename one of them"
        )


def check_types(what: str, schema: pa.Schema) -> None:
    """Raise on a column whose type a versioned table cannot store exactly, saying what to use."""
    for field in schema:
        if pa.types.is_nested(field.type):
            raise InvalidInputError(
                f"{what}: column {field.name!r} has nested type {field.type}; versioned tables hold flat "
                "columns (numbers, text, booleans, times): flatten it or store it as JSON text"
            )
        instead = _instead(field.type)
        if instead:
            raise InvalidInputError(
                f"{what}: column {field.name!r} has type {field.type}, which versioned tables do not store; "
                f"{instead}"
            )


def check_text_size(what: str, table: pa.Table, limit: int | None = None) -> None:
    """Raise when one text or binary column carries more than ``limit`` (``MAX_TEXT_BYTES``) bytes."""
    limit = MAX_TEXT_BYTES if limit is None else limit
    for field in table.schema:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_string_view(kind)
            or pa.types.is_binary_view(kind)
        ):
            continue
        column = table.column(field.name)
        if (
            pa.types.is_dictionary(field.type)
            or pa.types.is_string_view(kind)
            or pa.types.is_binary_view(kind)
        ):
            column = column.cast(pa.large_binary())
        size = int(pc.sum(pc.binary_length(column)).as_py() or 0)
        if size > limit:
            raise InvalidInputError(
                f"{what}: column {field.name!r} carries {size:,} bytes of {kind} in one commit, more than "
                f"the {limit:,} one commit can hold per column; commit the rows in smaller batches"
            )


def _instead(kind: pa.DataType) -> str:
    """Empty when ``kind`` is stored exactly, else what to do instead."""
    if pa.types.is_dictionary(kind):
        return _instead(kind.value_type)
    if pa.types.is_float16(kind):
        return "cast it to float32 (exact for every float16 value)"
    if pa.types.is_decimal(kind) and kind.bit_width > 128:
        return "use decimal128 (precision up to 38), or text for more digits"
    if pa.types.is_duration(kind):
        return "store the length as an integer number of a unit in the column name (e.g. 'wait_s' in seconds)"
    if pa.types.is_interval(kind):
        return "store its parts as integer columns (months, days, nanoseconds)"
    supported = (
        pa.types.is_integer,
        pa.types.is_float32,
        pa.types.is_float64,
        pa.types.is_decimal,
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_string_view,
        pa.types.is_binary,
        pa.types.is_large_binary,
        pa.types.is_binary_view,
        pa.types.is_fixed_size_binary,
        pa.types.is_boolean,
        pa.types.is_date,
        pa.types.is_time,
        pa.types.is_timestamp,
        pa.types.is_null,
    )
    if any(check(kind) for check in supported):
        return ""
    return "use numbers, text, binary, booleans, dates or timestamps"
