"""Schema evolution: how an incoming batch's columns meet a table's schema.

New columns are added (nullable, existing rows read as null) only when asked for
(``allow_new_columns``): a stray column in a file must not widen the table for good. Incoming values
of a related type (any number into a number column, any text into a text column, dates and
timestamps) are cast into the table's type only when no value changes (``casts``: casting back gives
the same value); a cast that would change a value is refused with an example row, unless
``allow_lossy_cast`` accepts the rounding.
Anything else is a type change, refused unless asked for, because it rewrites every bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlprod.data.casts import Loss, cast_or_raise, describe, exact_cast
from mlprod.data.columns import check_names, check_text_size, check_types
from mlprod.data.storage import conform
from mlprod.errors import InvalidInputError, LossyCastError, NewColumnsError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


@dataclass(frozen=True)
class Reconciled:
    """The table's schema after the batch, the batch in that schema, and what changed."""

    schema: pa.Schema
    batch: pa.Table
    added: tuple[str, ...]
    retyped: tuple[str, ...]
    rounded: tuple[str, ...] = ()


def reconcile(
    table: str,
    schema: pa.Schema | None,
    batch: pa.Table,
    key: Sequence[str],
    *,
    keys_only: bool = False,
    allow_type_change: bool = False,
    allow_lossy_cast: bool = False,
    allow_new_columns: bool = False,
) -> Reconciled:
    """Fit ``batch`` to ``schema`` (None for a table without data yet), or raise naming the column."""
    what = f"table {table!r}"
    batch = batch.replace_schema_metadata(None)
    check_columns(what, batch)
    if schema is not None:
        check_names(what, schema.names + [n for n in batch.column_names if n not in schema.names])
    if schema is None:
        return Reconciled(
            _plain(batch.schema), batch.cast(_plain(batch.schema)), tuple(batch.column_names), ()
        )
    if keys_only:
        key_schema = pa.schema([schema.field(k) for k in key])
        return Reconciled(
            schema,
            conform(batch.select(list(key)), key_schema, what=what, key=key, hint=_KEY_HINT),
            (),
            (),
        )
    missing = [f.name for f in schema if f.name not in batch.column_names]
    if missing:
        raise InvalidInputError(
            f"table {table!r}: incoming data lacks column(s) {', '.join(missing)}; every commit carries "
            "all columns (use upsert with the current values to leave a column unchanged)"
        )
    new = [name for name in batch.column_names if name not in schema.names]
    if new and not allow_new_columns:
        raise NewColumnsError(
            f"table {table!r}: incoming data has column(s) {', '.join(map(repr, new))} that the table "
            f"does not have; nothing was committed. To add them to the table for good (existing rows "
            f"read as null) pass allow_new_columns=True (--allow-new-columns); otherwise drop them "
            "from the data"
        )
    keys = batch.select(list(key))
    fields: list[pa.Field] = []
    columns: list[pa.ChunkedArray] = []
    retyped: list[str] = []
    rounded: list[str] = []
    for field in schema:
        values = batch.column(field.name)
        incoming = _plain_type(values.type)
        related = _related(incoming, field.type)
        cast = exact_cast(values, field.type) if related else None
        if cast is not None and not isinstance(cast, Loss):
            fields.append(field)
            columns.append(cast)
        elif allow_type_change and field.name not in key:
            fields.append(pa.field(field.name, incoming))
            columns.append(values.cast(incoming))
            retyped.append(field.name)
        elif allow_lossy_cast and related and field.name not in key:
            fields.append(field)
            columns.append(
                cast_or_raise(values, field.type, what=what, column=field.name, keys=keys, allow_lossy=True)
            )
            rounded.append(field.name)
        elif isinstance(cast, Loss):
            hint = (
                _KEY_HINT
                if field.name in key
                else (
                    f"To keep the incoming values make the column {incoming} with allow_type_change=True "
                    "(--allow-type-change), or accept the rounding with allow_lossy_cast=True "
                    "(--allow-lossy-cast)"
                )
            )
            raise LossyCastError(
                describe(
                    cast,
                    what=what,
                    column=field.name,
                    source=values.type,
                    target=field.type,
                    keys=keys,
                    hint=hint,
                )
            )
        else:
            hint = (
                "key columns cannot change type"
                if field.name in key
                else "a type change rewrites every bucket: pass allow_type_change=True (--allow-type-change)"
            )
            if _aware(incoming) != _aware(field.type) and all(
                pa.types.is_timestamp(t) or pa.types.is_date(t) for t in (incoming, field.type)
            ):
                hint = (
                    "naive times (and dates) and time-zone-aware times are not cast into each other, that "
                    "would guess a zone: give the incoming times the column's kind (e.g. "
                    "pd.to_datetime(..., utc=True)), or " + hint
                )
            raise InvalidInputError(
                f"table {table!r}: column {field.name!r} is {field.type} but the incoming data has "
                f"{values.type}; {hint}"
            )
    added = [f for f in _plain(batch.schema) if f.name not in schema.names]
    fields += added
    columns += [batch.column(f.name).cast(f.type) for f in added]
    new_schema = pa.schema(fields)
    return Reconciled(
        new_schema,
        pa.Table.from_arrays(columns, schema=new_schema),
        tuple(f.name for f in added),
        tuple(retyped),
        tuple(rounded),
    )


RESERVED = ("_bucket", "_before", "_after", "__present")
"""Column names the change sets use for themselves."""

_KEY_HINT = "key columns keep their type and every value exactly"


def check_columns(what: str, batch: pa.Table) -> None:
    """Refuse names and types a table cannot hold exactly (see ``columns``), and reserved names."""
    check_names(what, batch.column_names)
    for field in batch.schema:
        if field.name in RESERVED or field.name.startswith(("before.", "after.")):
            raise InvalidInputError(
                f"{what}: column name {field.name!r} is reserved ({', '.join(RESERVED)}, "
                "'before.*', 'after.*'); rename the column"
            )
    check_types(what, batch.schema)
    check_text_size(what, batch)


def _plain(schema: pa.Schema) -> pa.Schema:
    """Nullable fields, null-typed columns as strings, dictionaries and views decoded, no metadata."""
    return pa.schema([pa.field(f.name, _plain_type(f.type), nullable=True) for f in schema])


def _plain_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_dictionary(kind):
        return _plain_type(kind.value_type)
    if pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_binary_view(kind):
        return pa.binary()
    return kind


def _related(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether values of ``source`` may be cast into a ``target`` column at all (if none changes).

    Dates and naive timestamps are wall-clock values, aware timestamps are instants: between them a
    time zone would have to be guessed, so that is a type change, never a cast.
    """
    if pa.types.is_null(source):
        return True
    families = (
        (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal),
        (pa.types.is_string, pa.types.is_large_string),
        (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary),
        (pa.types.is_date, _naive),
        (_aware,),
        (pa.types.is_time,),
        (pa.types.is_boolean,),
    )
    return any(any(p(source) for p in fam) and any(p(target) for p in fam) for fam in families)


def _naive(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.tz is None


def _aware(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.tz is not None
