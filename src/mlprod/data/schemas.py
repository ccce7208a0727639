"""Schema evolution: how an incoming batch's columns meet a table's schema.

New columns are added (nullable, existing rows read as null). A value that casts losslessly into the
table's type is cast (CSV integers into a float column). Anything else is a type change, refused
unless asked for, because it rewrites every bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from mlprod.errors import InvalidInputError


@dataclass(frozen=True)
class Reconciled:
    """The table's schema after the batch, the batch in that schema, and what changed."""

    schema: pa.Schema
    batch: pa.Table
    added: tuple[str, ...]
    retyped: tuple[str, ...]


def reconcile(
    table: str,
    schema: pa.Schema | None,
    batch: pa.Table,
    key: Sequence[str],
    *,
    keys_only: bool = False,
    allow_type_change: bool = False,
) -> Reconciled:
    """Fit ``batch`` to ``schema`` (None for a table without data yet), or raise naming the column."""
    batch = batch.replace_schema_metadata(None)
    _check_columns(table, batch.schema)
    if schema is None:
        return Reconciled(
            _plain(batch.schema), batch.cast(_plain(batch.schema)), tuple(batch.column_names), ()
        )
    if keys_only:
        return Reconciled(
            schema, batch.select(list(key)).cast(pa.schema([schema.field(k) for k in key])), (), ()
        )
    missing = [f.name for f in schema if f.name not in batch.column_names]
    if missing:
        raise InvalidInputError(
            f"table {table!r}: incoming data lacks column(s) {', '.join(missing)}; every commit carries "
            "all columns (use upsert with the current values to leave a column unchanged)"
        )
    fields: list[pa.Field] = []
    retyped: list[str] = []
    for field in schema:
        incoming = batch.schema.field(field.name).type
        if incoming == field.type or _casts_losslessly(batch.column(field.name), field.type):
            fields.append(field)
        elif allow_type_change and field.name not in key:
            fields.append(pa.field(field.name, incoming))
            retyped.append(field.name)
        else:
            hint = (
                "key columns cannot change type"
                if field.name in key
                else "a type change rewrites every bucket: pass allow_type_change=True (--allow-type-change)"
            )
            raise InvalidInputError(
                f"table {table!r}: column {field.name!r} is {field.type} but the incoming data has "
                f"{incoming}; {hint}"
            )
    added = [f for f in _plain(batch.schema) if f.name not in schema.names]
    new_schema = pa.schema(fields + added)
    return Reconciled(
        new_schema,
        batch.select(new_schema.names).cast(new_schema),
        tuple(f.name for f in added),
        tuple(retyped),
    )


RESERVED = ("_bucket", "_before", "_after", "__present")
"""Column names the change sets use for themselves."""


def _check_columns(table: str, schema: pa.Schema) -> None:
    for field in schema:
        if field.name in RESERVED or field.name.startswith(("before.", "after.")):
            raise InvalidInputError(
                f"table {table!r}: column name {field.name!r} is reserved ({', '.join(RESERVED)}, "
                "'before.*', 'after.*'); rename the column"
            )
        if pa.types.is_nested(field.type):
            raise InvalidInputError(
                f"table {table!r}: column {field.name!r} has nested type {field.type}; versioned tables hold "
                "flat columns (numbers, text, booleans, times): flatten it or store it as JSON text"
            )


def _plain(schema: pa.Schema) -> pa.Schema:
    """Nullable fields, null-typed columns as strings, dictionaries decoded, no pandas metadata."""
    return pa.schema([pa.field(f.name, _plain_type(f.type), nullable=True) for f in schema])


def _plain_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_dictionary(kind):
        return _plain_type(kind.value_type)
    return kind


def _casts_losslessly(column: pa.ChunkedArray, target: pa.DataType) -> bool:
    source = column.type
    if pa.types.is_null(source):
        return True
    families = (
        (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal),
        (pa.types.is_string, pa.types.is_large_string, pa.types.is_dictionary),
        (pa.types.is_temporal,),
        (pa.types.is_boolean,),
    )
    if not any(any(p(source) for p in fam) and any(p(target) for p in fam) for fam in families):
        return False
    try:
        column.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True
