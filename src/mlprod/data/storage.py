"""Reading and writing a table's objects: hash buckets, change sets, and whole versions.

A *bucket* holds the rows whose key hashes to it, sorted by key, as one Parquet file named by its
sha256. A *change set* is what one commit did: per changed key, whether the row existed before and
after, and its values before (``before.<column>``) and after (``after.<column>``). Change sets serve
twice: applied in order on top of the buckets they are the version's recent changes ("deltas"), and
composed along a history they give a diff without opening any bucket.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mlprod.artifacts import ArtifactStore
from mlprod.data.casts import cast_or_raise
from mlprod.data.keys import bucket_ids
from mlprod.data.manifest import ChangeRef, Manifest
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")

BUCKET = "_bucket"
BEFORE = "_before"
AFTER = "_after"


def before(column: str) -> str:
    return f"before.{column}"


def after(column: str) -> str:
    return f"after.{column}"


def write_parquet(objects: ArtifactStore, table: pa.Table) -> str:
    """Store ``table`` as Parquet; identical rows in identical order give identical bytes and sha256."""
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(None), buffer, compression="zstd", row_group_size=64_000)
    return objects.put_bytes(buffer.getvalue())


def read_parquet(objects: ArtifactStore, sha256: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a stored Parquet object after checking its sha256 (a tampered file raises).

    Through ``ParquetFile``, not ``pq.read_table``: one in-memory file needs no dataset machinery, and
    ``pyarrow.dataset`` would import pandas (about half a second of a read command's start-up).
    """
    names = None if columns is None else list(columns)
    parquet = pq.ParquetFile(io.BytesIO(objects.get_bytes(sha256)))
    found = set(parquet.schema_arrow.names)
    missing = [name for name in names or () if name not in found]
    if missing:
        raise KeyError(f"no column(s) {', '.join(missing)} in Parquet object {sha256}")
    return parquet.read(columns=names)


def write_bucket(objects: ArtifactStore, rows: pa.Table, key: Sequence[str]) -> str | None:
    """Store one bucket's rows sorted by key; an empty bucket is ``None`` and stores nothing."""
    if rows.num_rows == 0:
        return None
    return write_parquet(objects, rows.sort_by([(name, "ascending") for name in key]))


def write_buckets(
    objects: ArtifactStore, rows: pa.Table, key: Sequence[str], buckets: int
) -> tuple[list[str | None], list[int]]:
    """Split ``rows`` into all ``buckets`` buckets and store each; return their shas and row counts."""
    ids = bucket_ids(rows, key, buckets)
    order = np.argsort(ids, kind="stable")
    ordered = rows.take(pa.array(order))
    bounds = np.searchsorted(ids[order], np.arange(buckets + 1))
    shas: list[str | None] = []
    counts: list[int] = []
    for bucket in range(buckets):
        part = ordered.slice(int(bounds[bucket]), int(bounds[bucket + 1] - bounds[bucket]))
        shas.append(write_bucket(objects, part, key))
        counts.append(part.num_rows)
    return shas, counts


def conform(
    table: pa.Table,
    schema: pa.Schema,
    *,
    what: str = "stored rows",
    key: Sequence[str] = (),
    allow_lossy: Sequence[str] = (),
    hint: str = "",
) -> pa.Table:
    """``table`` with exactly ``schema``'s columns in order; columns it lacks (added later) are null.

    Each cast must keep every value (``casts``), else the error names ``what``, the column and an
    example row by ``key``: older rows are never silently changed to fit a newer type.
    """
    keys = table.select(list(key)) if key and all(k in table.column_names for k in key) else None
    columns = [
        cast_or_raise(
            table.column(field.name),
            field.type,
            what=what,
            column=field.name,
            keys=keys,
            allow_lossy=field.name in allow_lossy,
            hint=hint,
        )
        if field.name in table.column_names
        else pa.nulls(table.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_change(objects: ArtifactStore, change: pa.Table) -> ChangeRef:
    """Store a change set and remember which buckets it touches."""
    touched = tuple(int(b) for b in np.unique(change.column(BUCKET).to_numpy()))
    return ChangeRef(write_parquet(objects, change), change.num_rows, touched)


def read_changes(
    objects: ArtifactStore, refs: Iterable[ChangeRef], buckets: set[int] | None = None
) -> list[pa.Table]:
    """The given change sets, oldest first, optionally only their rows in ``buckets``."""
    tables = []
    for ref in refs:
        if buckets is not None and not buckets.intersection(ref.buckets):
            continue
        table = read_parquet(objects, ref.sha256)
        if buckets is not None:
            table = table.filter(pc.is_in(table.column(BUCKET), pa.array(sorted(buckets), pa.int32())))
        tables.append(table)
    return tables


def compose(changes: Sequence[pa.Table], key: Sequence[str]) -> pa.Table:
    """One change set equivalent to applying ``changes`` in order: first "before", last "after" per key."""
    if not changes:
        raise ValueError("compose needs at least one change set")
    if len(changes) == 1:
        return changes[0]
    stacked = pa.concat_tables(changes, promote_options="permissive")
    value_columns = [name for name in stacked.column_names if name not in key]
    how = {
        name: "first" if name in (BEFORE, BUCKET) or name.startswith("before.") else "last"
        for name in value_columns
    }
    grouped = stacked.group_by(list(key), use_threads=False).aggregate(
        [(name, how[name], pc.ScalarAggregateOptions(skip_nulls=False)) for name in value_columns]
    )
    return pa.table(
        {name: grouped.column(name) for name in key}
        | {name: grouped.column(f"{name}_{how[name]}") for name in value_columns}
    )


def apply_changes(
    base: pa.Table, changes: Sequence[pa.Table], key: Sequence[str], schema: pa.Schema
) -> pa.Table:
    """The rows of ``base`` after the change sets, in ``schema``."""
    base = conform(base, schema)
    if not changes:
        return base
    latest = compose(changes, key)
    kept = base.join(latest.select(list(key)), keys=list(key), join_type="left anti")
    present = latest.filter(latest.column(AFTER))
    upserted = pa.table(
        {
            field.name: present.column(field.name if field.name in key else after(field.name))
            if (field.name in key or after(field.name) in present.column_names)
            else pa.nulls(present.num_rows, field.type)
            for field in schema
        }
    )
    return pa.concat_tables([conform(kept, schema), conform(upserted, schema)])


def read_version(
    objects: ArtifactStore,
    manifest: Manifest,
    buckets: Iterable[int] | None = None,
    columns: Sequence[str] | None = None,
    *,
    keys: pa.Table | None = None,
) -> pa.Table:
    """The rows of a version (or of some of its buckets, or only those with ``keys``), every object's
    sha256 checked. Filtering by ``keys`` early keeps a lookup's cost to reading, not to merging."""
    schema = manifest.schema
    if schema is None:
        return pa.table({})
    wanted = range(len(manifest.buckets)) if buckets is None else sorted(set(buckets))
    parts = []
    for sha in (manifest.buckets[b] for b in wanted):
        if sha:
            part = read_parquet(objects, sha)
            parts.append(conform(part if keys is None else _having(part, keys, manifest.key), schema))
    base = pa.concat_tables(parts) if parts else schema.empty_table()
    subset = None if buckets is None else set(wanted)
    changes = read_changes(objects, manifest.deltas, subset)
    if keys is not None:
        changes = [_having(change, keys, manifest.key) for change in changes]
    rows = apply_changes(base, changes, manifest.key, schema)
    return rows if columns is None else rows.select(list(columns))


def _having(rows: pa.Table, keys: pa.Table, key: Sequence[str]) -> pa.Table:
    """Rows of ``rows`` whose key is among ``keys`` (a semi-join, original column order kept)."""
    if rows.num_rows == 0:
        return rows
    wanted = keys.select(list(key)).cast(pa.schema([rows.schema.field(k) for k in key]))
    if len(key) == 1:
        return rows.filter(pc.is_in(rows.column(key[0]), value_set=wanted.column(0).combine_chunks()))
    return rows.join(wanted, keys=list(key), join_type="left semi").select(rows.column_names)
