"""Lossless casts: a value changes type only if casting it back gives the identical value.

Every place that puts values into a column of another type goes through here: a commit fitting its
batch to the table (``schemas.reconcile``), existing rows taking a changed column type, a version's
stored buckets read in its schema (``storage.conform``) and a merge carrying a type change. A cast
that would change any value (a time of day dropped by a date, float64 narrowed to float32, a float
rounded into ``decimal(10,2)``, an integer past 2**53 into a float) is refused naming the column, both
types and one example row. ``allow_lossy`` (``allow_lossy_cast=True`` on a commit) lets values be
rounded or truncated, never overflow.

Examples:
    >>> import pyarrow as pa
    >>> exact_cast(pa.chunked_array([[1, 2, None]]), pa.float64()).to_pylist()
    [1.0, 2.0, None]
    >>> loss = exact_cast(pa.chunked_array([[1.0, 0.1]]), pa.float32())
    >>> loss.row, loss.before, loss.after
    (1, 0.1, 0.10000000149011612)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlprod.errors import LossyCastError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

ROUNDING = {"allow_time_truncate": True, "allow_decimal_truncate": True, "allow_float_truncate": True}
"""What ``allow_lossy`` permits: rounding and truncation, never integer or time overflow."""


@dataclass(frozen=True)
class Loss:
    """The first row a cast would change, its value before and after (None: not representable), and
    how many rows change (None when the cast fails outright, so they were not counted)."""

    row: int
    before: Any
    after: Any
    count: int | None


def exact_cast(values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | Loss:
    """``values`` as ``target`` if every value survives the round trip, else the first :class:`Loss`."""
    if values.type == target:
        return values
    if pa.types.is_null(values.type):
        return pa.chunked_array([pa.nulls(len(values), target)], target)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    cast = _exact(values, target)
    return cast if cast is not None else _first_loss(values, target)


def cast_or_raise(
    values: pa.ChunkedArray,
    target: pa.DataType,
    *,
    what: str,
    column: str,
    keys: pa.Table | None = None,
    allow_lossy: bool = False,
    hint: str = "",
) -> pa.ChunkedArray:
    """``values`` as ``target``, or :class:`LossyCastError` naming ``what``, the column, both types and
    an example row (by ``keys`` when given, else by row number). ``allow_lossy`` accepts rounding."""
    result = exact_cast(values, target)
    if not isinstance(result, Loss):
        return result
    if allow_lossy:
        try:
            return values.cast(options=pc.CastOptions(target, **ROUNDING))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # overflow or unparsable text: not something rounding can fix
    raise LossyCastError(
        describe(result, what=what, column=column, source=values.type, target=target, keys=keys, hint=hint)
    )


def describe(
    loss: Loss,
    *,
    what: str,
    column: str,
    source: pa.DataType,
    target: pa.DataType,
    keys: pa.Table | None,
    hint: str = "",
) -> str:
    """The one-line message for a refused cast."""
    where = f"row {keys.slice(loss.row, 1).to_pylist()[0]}" if keys is not None else f"row {loss.row}"
    after = "(cannot be represented)" if loss.after is None else _show(loss.after)
    many = "some values" if loss.count is None else f"{loss.count:,} value(s)"
    return (
        f"{what}: column {column!r} cannot be cast from {source} to {target} without changing "
        f"{many}, e.g. {where}: {_show(loss.before)} -> {after}; nothing was changed"
        + (f". {hint}" if hint else "")
    )


def same_values(x: pa.ChunkedArray | pa.Array, y: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Per row, whether ``x`` and ``y`` hold the same value (null equals null, NaN equals NaN)."""
    equal = pc.fill_null(pc.equal(x, y), False)
    if pa.types.is_floating(x.type):
        equal = pc.or_(equal, pc.fill_null(pc.and_(pc.is_nan(x), pc.is_nan(y)), False))
    return pc.or_(equal, pc.and_(pc.is_null(x), pc.is_null(y)))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str | bytes) else str(value)


def _changed(values: pa.ChunkedArray, cast: pa.ChunkedArray) -> tuple[int, int] | None:
    """The first row whose value the round trip changes and how many change, or None; ``(-1, -1)``
    when values do change but the way back cannot say which (it fails, or gives invalid values)."""
    if values.null_count == len(values):
        return None
    try:
        back = _cast(cast, values.type, safe=False)
        back.validate(full=True)
        differs = pc.invert(same_values(values, back))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return -1, -1
    count = int(pc.sum(differs).as_py() or 0)
    if not count:
        return None
    return int(pc.indices_nonzero(differs)[0].as_py()), count


def _exact(values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    """``values`` as ``target`` if every value survives, else None. Arrow's safe cast refuses some casts
    by type rather than value (int64 into decimal128(10, 2), whatever the values), so when it refuses,
    its unchecked cast is taken if the result is valid and survives the round trip."""
    try:
        cast = _cast(values, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if _safe_is_exact(values.type, target):
            return None  # Arrow checked every value: a refusal is a changed value (-1 into uint8)
        unchecked = _valid_unchecked(values, target)
        return unchecked if unchecked is not None and _changed(values, unchecked) is None else None
    return cast if _safe_is_exact(values.type, target) or _changed(values, cast) is None else None


def _first_loss(values: pa.ChunkedArray, target: pa.DataType) -> Loss:
    """The first row a cast changes (with its new value, when Arrow's safe cast gives one) or cannot
    represent; by halving when no round trip can tell (about two passes over the column)."""
    try:
        cast = _cast(values, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        cast = None
    if cast is not None and (changed := _changed(values, cast)) is not None and changed[0] >= 0:
        return Loss(changed[0], values[changed[0]].as_py(), cast[changed[0]].as_py(), changed[1])
    unchecked = _valid_unchecked(values, target)
    if unchecked is not None and (changed := _changed(values, unchecked)) is not None and changed[0] >= 0:
        return Loss(changed[0], values[changed[0]].as_py(), None, changed[1])
    start, length = 0, len(values)
    while length > 1:
        half = length // 2
        if _exact(values.slice(start, half), target) is None:
            length = half
        else:
            start, length = start + half, length - half
    return Loss(start, values[start].as_py() if len(values) else None, None, None)


def _valid_unchecked(values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    """Arrow's unchecked cast if it gives valid values (no decimal past its precision), else None."""
    try:
        unchecked = _cast(values, target, safe=False)
        unchecked.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return unchecked


def _cast(values: pa.ChunkedArray, target: pa.DataType, *, safe: bool) -> pa.ChunkedArray:
    """Arrow's cast, except through the values' text where Arrow's direct cast is wrong: decimal to
    float is not correctly rounded (decimal 220.20 becomes 220.20000000000002), and integers into a
    decimal are refused by type, whatever the values (int64 into decimal128(10, 2) needs precision 21);
    and decimals changing width and scale at once."""
    if (pa.types.is_decimal(values.type) and pa.types.is_floating(target)) or (
        pa.types.is_integer(values.type) and pa.types.is_decimal(target)
    ):
        return values.cast(pa.string()).cast(target, safe=safe)
    if (
        pa.types.is_decimal(values.type)
        and pa.types.is_decimal(target)
        and values.type.bit_width != target.bit_width
    ):
        # rescale within 128 bits first: Arrow's one-step cast across widths and scales gives garbage
        # (decimal128(38, 10) 1 into decimal32(5, 2) is 0.14 unchecked, refused checked)
        return values.cast(pa.decimal128(38, target.scale), safe=safe).cast(target, safe=safe)
    return values.cast(target, safe=safe)


def _safe_is_exact(source: pa.DataType, target: pa.DataType) -> bool:
    """Pairs where Arrow's safe cast already refuses every changed value, so no round trip is needed
    (the casts that reading Parquet back into a table's schema makes on every read)."""
    both = (source, target)
    return (
        all(pa.types.is_integer(t) for t in both)
        or all(pa.types.is_timestamp(t) for t in both)
        or all(pa.types.is_time(t) for t in both)
        or all(pa.types.is_decimal(t) for t in both)
        or all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in both)
        or all(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in both)
        or (pa.types.is_date32(source) and pa.types.is_date64(target))
        or (pa.types.is_float32(source) and pa.types.is_float64(target))
    )
