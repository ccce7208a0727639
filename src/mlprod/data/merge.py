"""Three-way merge of two branches of a table, by key and by cell, against their common ancestor.

A cell changed on one side only takes that side's value; the same cell changed to the same value on
both sides is fine; changed differently on both sides it is a conflict, and so is a row deleted on
one side and changed on the other. Conflicts are resolved by a policy (``ours``/``theirs``) or by
rows supplied for the conflicting keys; until then nothing is committed.

Examples:
    >>> import tempfile, pyarrow as pa
    >>> from mlprod.workspace import Workspace
    >>> from mlprod.data.tables import TableStore
    >>> ws = Workspace.init(tempfile.mkdtemp())
    >>> tables = TableStore(ws)
    >>> _ = tables.create("t", key=["id"], data=pa.table({"id": [1, 2], "x": [1, 2], "y": ["a", "b"]}))
    >>> _ = tables.branch("t", "fix")
    >>> _ = tables.commit("t", pa.table({"id": [1], "x": [10], "y": ["a"]}), branch="fix")
    >>> _ = tables.commit("t", pa.table({"id": [1], "x": [1], "y": ["A"]}))
    >>> result = merge_branches(tables, "t", "fix", into="main")
    >>> tables.checkout("t").sort_by("id").to_pylist()
    [{'id': 1, 'x': 10, 'y': 'A'}, {'id': 2, 'x': 2, 'y': 'b'}]
    >>> ws.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from mlprod.data.casts import cast_or_raise
from mlprod.data.changes import (
    comparable_cells,
    compare,
    empty_change,
    side,
    union_schema,
    with_keys,
    without_keys,
)
from mlprod.data.columns import check_names
from mlprod.data.diff import diff_versions
from mlprod.data.ingest import to_arrow
from mlprod.data.keys import check_key_columns, check_unique_keys
from mlprod.data.tables import DEFAULT_BRANCH, CommitResult, TableStore
from mlprod.data.three_way import ROW, Conflict, merge_overlap
from mlprod.errors import InvalidInputError, LossyCastError, MergeConflictError, NewColumnsError

__all__ = ["ROW", "Conflict", "MergeResult", "merge_branches", "merged_schema"]


@dataclass(frozen=True)
class MergeResult:
    """The merge commit (or fast-forward), the common ancestor, and how conflicts were settled."""

    commit: CommitResult
    base: str
    fast_forward: bool
    resolved_conflicts: int


@comparable_cells
def merge_branches(
    store: TableStore,
    table: str,
    source: str,
    *,
    into: str = DEFAULT_BRANCH,
    policy: Literal["ours", "theirs"] | None = None,
    resolved: Any = None,
    message: str = "",
    allow_new_columns: bool = False,
) -> MergeResult:
    """Merge ``source`` (branch, tag or commit) into branch ``into``; raise listing unresolved conflicts.

    Columns ``source`` has and ``into`` lacks would widen ``into`` for good: refused
    (``NewColumnsError``) unless ``allow_new_columns`` asks for it, as for a commit.
    """
    if policy not in (None, "ours", "theirs"):
        raise InvalidInputError(f"merge policy must be 'ours' or 'theirs', got {policy!r}")
    info = store.info(table)
    ours_id = store.resolve(table, into).id
    store._branch_head(table, into)  # into must be a branch, not a tag
    theirs_id = store.resolve(table, source).id
    ours, theirs = store.manifest(ours_id), store.manifest(theirs_id)
    base_id = store.history.merge_base(table, ours_id, theirs_id)
    message = message or f"merge {source} into {into}"
    if base_id == theirs_id:
        nothing = CommitResult(
            table, into, ours_id, False, {"added": 0, "removed": 0, "changed": 0}, ours.num_rows
        )
        return MergeResult(nothing, base_id, False, 0)
    _check_new_columns(table, source, into, ours.schema, theirs.schema, allow_new_columns)
    if base_id == ours_id:
        store.history.move_branch(table, into, ours_id, theirs_id)
        moved = CommitResult(table, into, theirs_id, True, dict(theirs.counts), theirs.num_rows)
        return MergeResult(moved, base_id, True, 0)
    schema, retyped = merged_schema(table, store.manifest(base_id).schema, ours.schema, theirs.schema)
    d_ours = diff_versions(store, table, base_id, ours_id).change
    d_theirs = diff_versions(store, table, base_id, theirs_id).change
    key = info.key
    target = empty_change(key, schema).schema
    what = f"table {table!r}: merging {source!r} into {into!r}"
    d_ours, d_theirs = _as(d_ours, target, what, key), _as(d_theirs, target, what, key)
    theirs_only = without_keys(d_theirs, d_ours, key)
    both_ours = with_keys(d_ours, d_theirs, key)
    both_theirs = with_keys(d_theirs, d_ours, key).join(
        both_ours.select(list(key)), keys=list(key), join_type="inner"
    )
    both_ours = both_ours.join(both_theirs.select(list(key)), keys=list(key), join_type="inner")
    both_ours = both_ours.sort_by([(k, "ascending") for k in key])
    both_theirs = both_theirs.sort_by([(k, "ascending") for k in key])
    merged, conflicts, conflict_keys = merge_overlap(both_ours, both_theirs, key, schema, policy)
    settled = 0
    if resolved is not None:
        merged, conflicts, settled = _apply_resolved(
            to_arrow(resolved), merged, conflicts, conflict_keys, key, schema, table
        )
    elif policy is not None:
        settled = len({tuple(c.key.values()) for c in conflicts})
        conflicts = []
    if conflicts:
        shown = "; ".join(
            f"{c.key} {c.column}: base={c.base!r} ours={c.ours!r} theirs={c.theirs!r}" for c in conflicts[:5]
        )
        raise MergeConflictError(
            f"table {table!r}: merging {source!r} into {into!r} has {len(conflicts):,} conflict(s), "
            f"nothing was committed: {shown}{' …' if len(conflicts) > 5 else ''}. Resolve with policy "
            "ours/theirs or supply resolved rows",
            conflicts,
        )
    ours_rows = side(both_ours, "after", key, schema)
    overlap_change = compare(ours_rows, merged, key, schema, info.buckets)
    change = pa.concat_tables([_as(theirs_only, overlap_change.schema, what, key), overlap_change])
    try:
        commit = store.commit_change(
            info,
            branch=into,
            parent=ours,
            parent_id=ours_id,
            change=change,
            schema=schema,
            operation="merge",
            message=message,
            retyped=retyped,
            extra_parents=(theirs_id,),
        )
    except LossyCastError as exc:  # a row only one side has cannot take the other side's new type
        raise MergeConflictError(f"{what}: {exc}; nothing was committed", []) from exc
    return MergeResult(commit, base_id, False, settled)


def merged_schema(
    table: str, base: pa.Schema | None, ours: pa.Schema | None, theirs: pa.Schema | None
) -> tuple[pa.Schema, tuple[str, ...]]:
    """The merge's schema and the columns whose type it changes on ``into``: a type changed on one side
    (since ``base``) is carried over; changed differently on both sides, it is a conflict."""
    fields = {f.name: f for f in union_schema(ours, theirs)}
    check_names(f"table {table!r}: merging", list(fields))
    retyped = []
    for name in list(fields):
        mine = ours.field(name).type if ours is not None and name in ours.names else None
        other = theirs.field(name).type if theirs is not None and name in theirs.names else None
        if mine is None or other is None or mine == other:
            continue
        was = base.field(name).type if base is not None and name in base.names else None
        if mine == was:
            fields[name] = pa.field(name, other)
            retyped.append(name)
        elif other != was:
            raise MergeConflictError(
                f"table {table!r}: column {name!r} changed type on both sides ({was or 'absent'} -> "
                f"{mine} on ours, -> {other} on theirs); nothing was committed. Give the column one type on "
                "one branch (commit with allow_type_change=True), then merge",
                [Conflict({}, name, str(was), str(mine), str(other))],
            )
    return pa.schema(list(fields.values())), tuple(retyped)


def _check_new_columns(
    table: str, source: str, into: str, ours: pa.Schema | None, theirs: pa.Schema | None, allowed: bool
) -> None:
    new = [n for n in theirs.names if n not in ours.names] if ours is not None and theirs is not None else []
    if new and not allowed:
        raise NewColumnsError(
            f"table {table!r}: {source!r} has column(s) {', '.join(map(repr, new))} that {into!r} does not "
            f"have; nothing was merged. To add them to {into!r} for good pass allow_new_columns=True "
            "(--allow-new-columns)"
        )


def _apply_resolved(
    resolved: pa.Table,
    merged: pa.Table,
    conflicts: list[Conflict],
    conflict_keys: pa.Table,
    key: Sequence[str],
    schema: pa.Schema,
    table: str,
) -> tuple[pa.Table, list[Conflict], int]:
    """Replace the merged rows of the conflicting keys by the rows the user supplied."""
    check_key_columns(resolved, key, what=f"resolved rows for table {table!r}")
    check_unique_keys(resolved, key, what=f"resolved rows for table {table!r}")
    missing = [f.name for f in schema if f.name not in resolved.column_names]
    if missing:
        raise InvalidInputError(f"resolved rows for table {table!r} lack column(s) {', '.join(missing)}")
    what = f"resolved rows for table {table!r}"
    keys = resolved.select(list(key))
    try:
        resolved = pa.Table.from_arrays(
            [
                cast_or_raise(resolved.column(f.name), f.type, what=what, column=f.name, keys=keys)
                for f in schema
            ],
            schema=schema,
        )
    except LossyCastError as exc:  # the user's rows, not two versions that cannot be compared
        raise InvalidInputError(str(exc)) from exc
    stray = without_keys(resolved, conflict_keys, key)
    if stray.num_rows:
        raise InvalidInputError(
            f"resolved rows for table {table!r}: {stray.num_rows:,} key(s) have no conflict, e.g. "
            f"{stray.select(list(key)).slice(0, 3).to_pylist()}"
        )
    covered = {tuple(row.values()) for row in resolved.select(list(key)).to_pylist()}
    remaining = [c for c in conflicts if tuple(c.key.values()) not in covered]
    merged = pa.concat_tables([without_keys(merged, resolved, key), resolved])
    return merged, remaining, len(covered)


def _as(change: pa.Table, schema: pa.Schema, what: str, key: Sequence[str]) -> pa.Table:
    """A change set in the merge's types; a value one side wrote that the other side's new column type
    cannot hold exactly is a conflict."""
    keys = change.select(list(key))
    try:
        columns = [
            cast_or_raise(
                change.column(f.name),
                f.type,
                what=what,
                column=f.name.removeprefix("before.").removeprefix("after."),
                keys=keys,
            )
            if f.name in change.column_names
            else pa.nulls(change.num_rows, f.type)
            for f in schema
        ]
    except LossyCastError as exc:
        raise MergeConflictError(
            f"{exc}. The other branch changed the column's type: change the value on one branch first",
            [],
        ) from exc
    return pa.Table.from_arrays(columns, schema=schema)
