"""Computing change sets: which keys were added, removed or changed between two sets of rows.

One comparison serves commits (current rows vs incoming rows), diffs (two versions' rows) and merges,
so "changed" means the same thing everywhere: a cell is changed when its old and new values are
distinct, with null equal to null and NaN equal to NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from mlprod.data.keys import bucket_ids
from mlprod.data.storage import AFTER, BEFORE, BUCKET, after, before, conform
from mlprod.errors import InvalidInputError, LossyCastError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
else:
    duckdb = lazy_module("duckdb")
    pa = lazy_module("pyarrow")

Params = ParamSpec("Params")
Result = TypeVar("Result")


def comparable_cells(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """Turn Arrow's refusal to compare two versions' cells (a column changed type between them) into
    an error naming the table (the decorated function's second argument)."""

    @functools.wraps(function)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        try:
            return function(*args, **kwargs)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, LossyCastError) as exc:
            table = args[1] if len(args) > 1 else kwargs.get("table")
            raise InvalidInputError(
                f"table {table!r}: the versions cannot be compared cell by cell ({exc}); a column probably "
                "changed type between them"
            ) from exc

    return wrapper


def union_schema(*schemas: pa.Schema | None) -> pa.Schema:
    """Columns of all schemas, first appearance first (a column added later is nullable)."""
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for field in schema or []:
            fields.setdefault(field.name, field)
    return pa.schema(list(fields.values()))


def comparison_schema(old: pa.Schema | None, new: pa.Schema | None, *, as_text: bool = False) -> pa.Schema:
    """The schema two versions are compared in: their union, with a column whose type differs between
    them (a type change) in the newer type, or as text (``as_text``), which every type casts into
    exactly, for when the older values do not fit the newer type."""
    schema = union_schema(old, new)
    changed = {
        f.name: new.field(f.name).type
        for f in old or []
        if new is not None and f.name in new.names and new.field(f.name).type != f.type
    }
    return pa.schema(
        [
            pa.field(f.name, pa.large_string() if as_text else changed[f.name]) if f.name in changed else f
            for f in schema
        ]
    )


def compare(old: pa.Table, new: pa.Table, key: Sequence[str], schema: pa.Schema, buckets: int) -> pa.Table:
    """The change set turning ``old`` into ``new`` (both keyed by ``key``; rows absent are absent)."""
    old, new = conform(old, schema), conform(new, schema)
    values = [field.name for field in schema if field.name not in key]
    q = _quote
    join = " AND ".join(f"o.{q(k)} = n.{q(k)}" for k in key)
    differs = " OR ".join(f"o.{q(c)} IS DISTINCT FROM n.{q(c)}" for c in values) or "FALSE"
    select = ", ".join(
        [f"coalesce(o.{q(k)}, n.{q(k)}) AS {q(k)}" for k in key]
        + [f"o.__present IS NOT NULL AS {q(BEFORE)}", f"n.__present IS NOT NULL AS {q(AFTER)}"]
        + [f"o.{q(c)} AS {q(before(c))}" for c in values]
        + [f"n.{q(c)} AS {q(after(c))}" for c in values]
    )
    connection = duckdb.connect()
    try:
        connection.register("old_rows", old)
        connection.register("new_rows", new)
        changed = connection.sql(
            f"SELECT {select} FROM (SELECT *, TRUE AS __present FROM old_rows) o "
            f"FULL OUTER JOIN (SELECT *, TRUE AS __present FROM new_rows) n ON {join} "
            f"WHERE o.__present IS NULL OR n.__present IS NULL OR {differs}"
        ).to_arrow_table()
    finally:
        connection.close()
    return _typed(changed, key, schema, buckets)


def retyped_change(
    old: pa.Table, new: pa.Table, key: Sequence[str], schema: pa.Schema, buckets: int
) -> pa.Table:
    """The change set of a commit that changes a column's type: old values cannot be held in the new
    type, so every row present on both sides counts as changed and no before-values are kept."""
    old_keys, new_keys = old.select(list(key)), new.select(list(key))
    removed = without_keys(old_keys, new_keys, key).cast(new_keys.schema)
    keys = pa.concat_tables([new_keys, removed])
    rows = pa.concat_tables([conform(new, schema), conform(removed, schema)])
    n, kept = keys.num_rows, new.num_rows
    existed = {tuple(r.values()) for r in old_keys.to_pylist()}
    before_flags = [tuple(r.values()) in existed for r in keys.to_pylist()]
    columns: dict[str, pa.Array | pa.ChunkedArray] = {k: keys.column(k) for k in key}
    columns[BUCKET] = pa.array(bucket_ids(keys, key, buckets), pa.int32())
    columns[BEFORE] = pa.array(before_flags, pa.bool_())
    columns[AFTER] = pa.array([i < kept for i in range(n)], pa.bool_())
    values = [f for f in schema if f.name not in key]
    for field in values:
        columns[before(field.name)] = pa.nulls(n, field.type)
    for field in values:
        columns[after(field.name)] = rows.column(field.name)
    return pa.table(columns)


def side(change: pa.Table, which: str, key: Sequence[str], schema: pa.Schema) -> pa.Table:
    """The rows that exist on one side (``"before"`` or ``"after"``) of a change set, as table rows."""
    exists, name = (BEFORE, before) if which == "before" else (AFTER, after)
    present = change.filter(change.column(exists))
    return pa.Table.from_arrays(
        [
            present.column(f.name if f.name in key else name(f.name))
            if (f.name in key or name(f.name) in present.column_names)
            else pa.nulls(present.num_rows, f.type)
            for f in schema
        ],
        schema=schema,
    ).cast(schema)


def without_keys(rows: pa.Table, other: pa.Table, key: Sequence[str]) -> pa.Table:
    """Rows of ``rows`` whose key is not in ``other``."""
    if other.num_rows == 0 or rows.num_rows == 0:
        return rows
    kept = rows.join(other.select(list(key)), keys=list(key), join_type="left anti")
    return kept.select(rows.column_names)


def with_keys(rows: pa.Table, other: pa.Table, key: Sequence[str]) -> pa.Table:
    """Rows of ``rows`` whose key is in ``other``."""
    if other.num_rows == 0 or rows.num_rows == 0:
        return rows.slice(0, 0)
    kept = rows.join(other.select(list(key)), keys=list(key), join_type="left semi")
    return kept.select(rows.column_names)


def empty_change(key: Sequence[str], schema: pa.Schema) -> pa.Table:
    return _typed(pa.table({}), key, schema, 1, empty=True)


def _typed(
    changed: pa.Table, key: Sequence[str], schema: pa.Schema, buckets: int, *, empty: bool = False
) -> pa.Table:
    rows = 0 if empty else changed.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for k in key:
        columns[k] = (
            pa.array([], schema.field(k).type) if empty else changed.column(k).cast(schema.field(k).type)
        )
    keys = pa.table(columns)
    columns[BUCKET] = pa.array(bucket_ids(keys, key, buckets), pa.int32())
    for flag in (BEFORE, AFTER):
        columns[flag] = pa.array([], pa.bool_()) if empty else changed.column(flag)
    for prefix in (before, after):
        for field in schema:
            if field.name not in key:
                columns[prefix(field.name)] = (
                    pa.nulls(rows, field.type)
                    if empty
                    else changed.column(prefix(field.name)).cast(field.type)
                )
    return pa.table(columns)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
