"""The cell-level rules of a three-way merge, shared by branch merges and by rebasing a commit.

Given, for the same keys, the change one side made and the change the other side made from their
common base, a cell changed on one side only takes that side's value; the same cell changed to the
same value on both sides is fine; changed differently on both sides it is a conflict, and so is a
row deleted on one side and changed on the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlprod.data.casts import same_values
from mlprod.data.storage import AFTER, BEFORE, after, before
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

ROW = "*"
"""The column named by a conflict about a whole row (deleted on one side, changed on the other)."""


@dataclass(frozen=True)
class Conflict:
    """One cell (or whole row, ``column == "*"``) changed differently on both sides."""

    key: dict[str, Any]
    column: str
    base: Any
    ours: Any
    theirs: Any


def merge_overlap(
    ours: pa.Table, theirs: pa.Table, key: Sequence[str], schema: pa.Schema, policy: str | None
) -> tuple[pa.Table, list[Conflict], pa.Table]:
    """Merged rows for keys both sides changed (``ours`` and ``theirs`` are change sets of the same keys in
    the same order, ``before.*`` being the common base), the conflicts, and the conflicting keys."""
    o_exists, t_exists = ours.column(AFTER), theirs.column(AFTER)
    row_conflict = pc.xor(o_exists, t_exists)
    conflicts: list[Conflict] = []
    conflict_mask = row_conflict
    keys = ours.select(list(key))
    for i in _indices(row_conflict):
        conflicts.append(
            Conflict(
                _key(keys, i),
                ROW,
                "present" if ours.column(BEFORE)[i].as_py() else "absent",
                "deleted" if not o_exists[i].as_py() else "changed",
                "deleted" if not t_exists[i].as_py() else "changed",
            )
        )
    columns: dict[str, pa.ChunkedArray | pa.Array] = {k: ours.column(k) for k in key}
    for field in schema:
        name = field.name
        if name in key:
            continue
        b, o, t = ours.column(before(name)), ours.column(after(name)), theirs.column(after(name))
        o_same_t, o_same_b, t_same_b = same_values(o, t), same_values(o, b), same_values(t, b)
        take_theirs = pc.and_(pc.and_(o_exists, t_exists), pc.and_(pc.invert(o_same_t), o_same_b))
        clash = pc.and_(
            pc.and_(pc.and_(o_exists, t_exists), pc.invert(o_same_t)),
            pc.and_(pc.invert(o_same_b), pc.invert(t_same_b)),
        )
        if policy == "theirs":
            take_theirs = pc.or_(take_theirs, clash)
        columns[name] = pc.if_else(take_theirs, t, o)
        for i in _indices(clash):
            conflicts.append(Conflict(_key(keys, i), name, b[i].as_py(), o[i].as_py(), t[i].as_py()))
        conflict_mask = pc.or_(conflict_mask, clash)
    merged = pa.table(columns)
    exists = pc.and_(o_exists, t_exists)
    if policy == "ours":
        exists = pc.or_(exists, pc.and_(row_conflict, o_exists))
    elif policy == "theirs":
        exists = pc.or_(exists, pc.and_(row_conflict, t_exists))
        merged = pa.table(
            {
                name: pc.if_else(
                    pc.and_(row_conflict, t_exists), theirs.column(after(name)), merged.column(name)
                )
                if name not in key
                else merged.column(name)
                for name in merged.column_names
            }
        )
    return merged.filter(exists).cast(schema), conflicts, keys.filter(conflict_mask)


def _indices(mask: pa.ChunkedArray | pa.Array) -> list[int]:
    return [int(i) for i in pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()] if len(mask) else []


def _key(keys: pa.Table, i: int) -> dict[str, Any]:
    row: dict[str, Any] = keys.slice(i, 1).to_pylist()[0]
    return row


def as_schema(change: pa.Table, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays(
        [
            change.column(f.name).cast(f.type)
            if f.name in change.column_names
            else pa.nulls(change.num_rows, f.type)
            for f in schema
        ],
        schema=schema,
    )
