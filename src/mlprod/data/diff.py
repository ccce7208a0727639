"""Keyed diff between two versions of a table, at a cost that grows with the change.

Two ways to get the same answer, and the cheaper one is taken:

* **change sets** — walk first parents from both versions to their first common commit and compose
  the change sets on the way (each commit stores the before/after of the rows it touched). Nothing
  of the table itself is opened.
* **buckets** — open only the buckets whose content differs (a different bucket hash or different
  pending change sets) in both versions, and compare them by key.

Examples:
    >>> import tempfile, pyarrow as pa
    >>> from mlprod.workspace import Workspace
    >>> from mlprod.data.tables import TableStore
    >>> ws = Workspace.init(tempfile.mkdtemp())
    >>> tables = TableStore(ws)
    >>> _ = tables.create("t", key=["id"], data=pa.table({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0]}))
    >>> _ = tables.tag("t", "v1")
    >>> _ = tables.commit("t", pa.table({"id": [2, 4], "x": [2.5, 4.0]}), mode="upsert")
    >>> d = diff_versions(tables, "t", "v1", "main")
    >>> d.summary()
    {'added': 1, 'removed': 0, 'changed': 1, 'cells': {'x': 1}}
    >>> d.cells().to_pylist()
    [{'id': 2, 'column': 'x', 'old': '2', 'new': '2.5'}]
    >>> ws.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from mlprod.data.changes import comparable_cells, compare, comparison_schema, empty_change, side, without_keys
from mlprod.data.manifest import Manifest
from mlprod.data.storage import AFTER, BEFORE, after, before, compose, read_changes, read_version
from mlprod.data.tables import TableStore
from mlprod.errors import InvalidInputError, LossyCastError


@dataclass(frozen=True)
class TableDiff:
    """Rows added, removed and changed from ``old`` to ``new``; ``change`` holds before/after values."""

    table: str
    old: str
    new: str
    key: tuple[str, ...]
    schema: pa.Schema
    change: pa.Table
    method: str
    rows_read: int

    @property
    def added(self) -> pa.Table:
        """Rows in ``new`` whose key is not in ``old``."""
        return side(self._where(False, True), "after", self.key, self.schema)

    @property
    def removed(self) -> pa.Table:
        """Rows of ``old`` whose key is gone in ``new``."""
        return side(self._where(True, False), "before", self.key, self.schema)

    @property
    def changed(self) -> pa.Table:
        """Keys present in both with at least one changed cell: ``before.<col>`` and ``after.<col>``."""
        both = self._where(True, True)
        return both.drop_columns(["_bucket", BEFORE, AFTER])

    def cells(self) -> pa.Table:
        """One row per changed cell: the key, the column, and the old and new value as text."""
        both = self._where(True, True)
        parts = []
        for field in self.schema:
            if field.name in self.key:
                continue
            old, new = both.column(before(field.name)), both.column(after(field.name))
            differs = _distinct(old, new)
            if not pc.any(differs).as_py():
                continue
            rows = both.filter(differs)
            parts.append(
                pa.table(
                    {k: rows.column(k) for k in self.key}
                    | {
                        "column": pa.array([field.name] * rows.num_rows, pa.string()),
                        "old": rows.column(before(field.name)).cast(pa.string()),
                        "new": rows.column(after(field.name)).cast(pa.string()),
                    }
                )
            )
        if not parts:
            return pa.table(
                {k: pa.array([], self.schema.field(k).type) for k in self.key}
                | {name: pa.array([], pa.string()) for name in ("column", "old", "new")}
            )
        return pa.concat_tables(parts)

    def summary(self) -> dict[str, Any]:
        """Counts of added, removed and changed rows, and of changed cells per column."""
        counts = self.cells().column("column").value_counts().to_pylist()
        return {
            "added": self._where(False, True).num_rows,
            "removed": self._where(True, False).num_rows,
            "changed": self._where(True, True).num_rows,
            "cells": {item["values"]: item["counts"] for item in sorted(counts, key=lambda i: i["values"])},
        }

    def _where(self, was: bool, now: bool) -> pa.Table:
        c = self.change
        mask = pc.and_(
            c.column(BEFORE) if was else pc.invert(c.column(BEFORE)),
            c.column(AFTER) if now else pc.invert(c.column(AFTER)),
        )
        return c.filter(mask)


@comparable_cells
def diff_versions(
    store: TableStore,
    table: str,
    old: str,
    new: str,
    *,
    method: Literal["auto", "change sets", "buckets"] = "auto",
) -> TableDiff:
    """The keyed diff from version ``old`` to version ``new`` (branches, tags or commit ids).

    ``method`` forces one way of computing it (for tests and benchmarks); both give the same result.
    """
    if method not in ("auto", "change sets", "buckets"):
        raise InvalidInputError(f"diff method must be auto, 'change sets' or buckets, got {method!r}")
    info = store.info(table)
    a, b = store.resolve(table, old), store.resolve(table, new)
    ma, mb = store.manifest(a.id), store.manifest(b.id)
    schema = comparison_schema(ma.schema, mb.schema)
    if a.id == b.id:
        return TableDiff(
            table, a.id, b.id, info.key, schema, empty_change(info.key, schema), "same commit", 0
        )
    by_sets = _change_set_paths(store, table, a.id, b.id)
    if by_sets is not None and not _same_types(schema, by_sets[0] + by_sets[1]):
        by_sets = None  # change sets written in other column types compose only after a cast: read buckets
    differing = [i for i in range(info.buckets) if ma.bucket_signature(i) != mb.bucket_signature(i)]
    bucket_cost = sum(ma.bucket_rows[i] + mb.bucket_rows[i] for i in differing)
    if method == "change sets" and by_sets is None:
        raise InvalidInputError(f"table {table!r}: {old} and {new} are not joined by stored change sets")
    set_cost = None if by_sets is None else sum(m.change.rows for m in by_sets[0] + by_sets[1] if m.change)
    if (
        by_sets is not None
        and set_cost is not None
        and method != "buckets"
        and (method == "change sets" or set_cost <= bucket_cost)
    ):
        path_a, path_b = by_sets
        change, rows = _by_change_sets(store, info.key, schema, path_a, path_b, info.buckets)
        return TableDiff(table, a.id, b.id, info.key, schema, change, "change sets", rows)
    old_rows = read_version(store.objects, ma, differing) if ma.schema else schema.empty_table()
    new_rows = read_version(store.objects, mb, differing) if mb.schema else schema.empty_table()
    try:
        change = compare(old_rows, new_rows, info.key, schema, info.buckets)
    except LossyCastError:  # older values that the newer type cannot hold: compare as text
        schema = comparison_schema(ma.schema, mb.schema, as_text=True)
        change = compare(old_rows, new_rows, info.key, schema, info.buckets)
    return TableDiff(
        table, a.id, b.id, info.key, schema, change, "buckets", old_rows.num_rows + new_rows.num_rows
    )


def _change_set_paths(
    store: TableStore, table: str, a: str, b: str
) -> tuple[list[Manifest], list[Manifest]] | None:
    """Manifests from each version back to the first common first-parent ancestor, if all kept changes."""
    chain_a = [c.id for c in store.history.first_parent_chain(table, a)]
    position = {commit: i for i, commit in enumerate(chain_a)}
    path_b: list[Manifest] = []
    for commit in store.history.first_parent_chain(table, b):
        if commit.id in position:
            path_a = [store.manifest(c) for c in chain_a[: position[commit.id]]]
            if all(_kept(m) for m in path_a + path_b):
                return path_a, path_b
            return None
        path_b.append(store.manifest(commit.id))
    return None


def _same_types(schema: pa.Schema, manifests: list[Manifest]) -> bool:
    return all(
        schema.field(f.name).type == f.type
        for m in manifests
        for f in m.schema or []
        if f.name in schema.names
    )


def _kept(manifest: Manifest) -> bool:
    return manifest.change is not None or not any(manifest.counts.values())


def _by_change_sets(
    store: TableStore,
    key: Sequence[str],
    schema: pa.Schema,
    path_a: list[Manifest],
    path_b: list[Manifest],
    buckets: int,
) -> tuple[pa.Table, int]:
    """Compose each side's change sets since the common commit, then compare the touched keys only."""
    comp_a = _composed(store, key, path_a)
    comp_b = _composed(store, key, path_b)
    old_rows = _state(comp_a, comp_b, key, schema)
    new_rows = _state(comp_b, comp_a, key, schema)
    read = (comp_a.num_rows if comp_a else 0) + (comp_b.num_rows if comp_b else 0)
    return compare(old_rows, new_rows, key, schema, buckets), read


def _composed(store: TableStore, key: Sequence[str], path: list[Manifest]) -> pa.Table | None:
    refs = [m.change for m in reversed(path) if m.change is not None]
    return compose(read_changes(store.objects, refs), key) if refs else None


def _state(own: pa.Table | None, other: pa.Table | None, key: Sequence[str], schema: pa.Schema) -> pa.Table:
    """Rows of one side for every key either side touched: its own "after", else the common "before"."""
    parts = []
    if own is not None:
        parts.append(side(own, "after", key, schema))
    if other is not None:
        untouched = other if own is None else without_keys(other, own, key)
        parts.append(side(untouched, "before", key, schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _distinct(old: pa.ChunkedArray, new: pa.ChunkedArray) -> pa.ChunkedArray:
    """Null-aware, NaN-aware "is distinct from"."""
    both_null = pc.and_(pc.is_null(old), pc.is_null(new))
    equal = pc.fill_null(pc.equal(old, new), False)
    if pa.types.is_floating(old.type):
        equal = pc.or_(equal, pc.fill_null(pc.and_(pc.is_nan(old), pc.is_nan(new)), False))
    return pc.invert(pc.or_(equal, both_null))
