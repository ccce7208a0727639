"""Rebasing a prepared commit onto a branch that moved while it was being prepared.

A commit's change set is computed against the head it read (the base). When other commits landed on
the branch meanwhile, the change is carried onto the new head instead of failing: keys that only
this commit changed keep their change; keys that both changed are merged cell by cell by the rules
of a three-way merge (``three_way``), and a cell changed differently on both sides (or a row deleted
on one side and changed on the other) is a conflict that commits nothing. What the others changed is
read from their change sets (the new head's extra pending change sets, or those along its first
parents), so a rebase costs in proportion to the changes, not to the table; only when one of them
was too large to keep are this commit's keys looked up in the new head instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mlprod.artifacts import ArtifactStore
from mlprod.data.changes import compare, empty_change, side, union_schema, with_keys, without_keys
from mlprod.data.columns import name_clashes
from mlprod.data.manifest import ChangeRef, Manifest
from mlprod.data.storage import compose, read_parquet, write_change
from mlprod.data.three_way import as_schema, merge_overlap
from mlprod.errors import ConflictError, MergeConflictError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")

MAX_WALK = 10_000
"""How many commits back along first parents the base is looked for before keys are looked up instead."""


@dataclass(frozen=True)
class Rebased:
    """The change carried onto the new head, its schema, and whether the others touched none of its keys."""

    change: pa.Table
    schema: pa.Schema
    untouched: bool


def stacked_on(base: Manifest, head: Manifest) -> bool:
    """True when ``head`` is ``base`` plus pending change sets (nobody rewrote a bucket in between)."""
    return head.buckets == base.buckets and head.deltas[: len(base.deltas)] == base.deltas


def changes_since(
    base_id: str, base: Manifest, head_id: str, head: Manifest, manifest_of: Callable[[str], Manifest]
) -> tuple[ChangeRef, ...] | None:
    """The change sets of the commits from ``base`` to ``head``, oldest first, or None when one of them
    was not kept (a change too large to store apart) or ``base`` is not a first-parent ancestor."""
    if stacked_on(base, head):
        return head.deltas[len(base.deltas) :]
    found: list[ChangeRef] = []
    current, manifest = head_id, head
    for _ in range(MAX_WALK):
        if current == base_id:
            return tuple(reversed(found))
        if manifest.change is not None:
            found.append(manifest.change)
        elif any(manifest.counts.values()) or not manifest.parents:
            return None
        current = manifest.parents[0]
        manifest = manifest_of(current)
    return None


def their_change(
    objects: ArtifactStore, refs: Sequence[ChangeRef], keys: pa.Table, key: Sequence[str]
) -> pa.Table:
    """What the change sets ``refs`` did, composed, to the rows with ``keys`` (before = the base)."""
    parts = [with_keys(read_parquet(objects, ref.sha256), keys, key) for ref in refs]
    parts = [part for part in parts if part.num_rows]
    return compose(parts, key) if parts else pa.table({})


def their_change_from_rows(
    change: pa.Table, schema: pa.Schema, head_rows: pa.Table, key: Sequence[str], buckets: int
) -> pa.Table:
    """What the others did to this change's keys, from the new head's rows of those keys."""
    target = union_schema(schema, head_rows.schema)
    return compare(side(change, "before", key, schema), head_rows, key, target, buckets)


def carried_manifest(
    objects: ArtifactStore,
    prepared: Manifest,
    base: Manifest,
    head_id: str,
    head: Manifest,
    rebased: Rebased,
    counts: dict[str, int],
) -> tuple[Manifest, bool]:
    """The manifest of the rebased commit on ``head``, and whether it reuses the prepared buckets.

    When nobody rewrote a bucket since the base and no key of this commit was touched, the prepared
    buckets (even freshly compacted ones) stay, with the change sets that landed since applied on
    top. Otherwise the change becomes one more pending change set of ``head``: no bucket is rewritten
    while the branch's lock is held, and the next commit compacts when they have grown too large.
    """
    num_rows = head.num_rows + counts["added"] - counts["removed"]
    if rebased.untouched and rebased.schema == prepared.schema and stacked_on(base, head):
        since = head.deltas[len(base.deltas) :]
        return replace(prepared, deltas=prepared.deltas + since, parents=(head_id,), num_rows=num_rows), True
    kept = prepared.change if rebased.untouched else None
    ref = kept or (write_change(objects, rebased.change) if rebased.change.num_rows else None)
    carried = replace(
        prepared,
        schema=rebased.schema,
        buckets=head.buckets,
        bucket_rows=head.bucket_rows,
        deltas=head.deltas + ((ref,) if ref else ()),
        change=ref,
        parents=(head_id,),
        num_rows=num_rows,
        counts=counts,
    )
    return carried, False


def rebase_change(
    change: pa.Table,
    schema: pa.Schema,
    theirs: pa.Table,
    *,
    head_schema: pa.Schema | None,
    key: Sequence[str],
    buckets: int,
    what: str,
) -> Rebased:
    """Carry ``change`` (computed against the base) onto the new head, given ``theirs``: what the commits
    since the base did to (at least) the same keys. Raise ``MergeConflictError`` naming the cells that
    both changed differently."""
    retyped = [
        f"{field.name} ({field.type} here, {head_schema.field(field.name).type} on the branch)"
        for field in schema
        if head_schema is not None
        and field.name in head_schema.names
        and head_schema.field(field.name).type != field.type
    ]
    if retyped:
        raise ConflictError(
            f"{what}: column(s) {', '.join(retyped)} changed type on the branch while this commit was "
            "prepared, so it cannot be rebased; nothing was committed: commit the rows again"
        )
    target = union_schema(schema, head_schema)
    clashes = name_clashes(target.names)
    if clashes:
        first, second = clashes[0]
        raise ConflictError(
            f"{what}: columns {first!r} and {second!r}, one added by this commit and one by a commit that "
            "landed while it was prepared, differ only by case or Unicode form, which a table cannot hold; "
            "nothing was committed: rename the column and commit again"
        )
    layout = empty_change(key, target).schema
    ours = as_schema(change, layout)
    theirs = with_keys(as_schema(theirs, layout), ours, key) if theirs.num_rows else layout.empty_table()
    if theirs.num_rows == 0:
        return Rebased(ours, target, untouched=True)
    order = [(name, "ascending") for name in key]
    both_ours = with_keys(ours, theirs, key).sort_by(order)
    both_theirs = theirs.sort_by(order)
    merged, conflicts, _ = merge_overlap(both_ours, both_theirs, key, target, None)
    if conflicts:
        shown = "; ".join(
            f"{c.key} {c.column}: base={c.base!r} this commit={c.ours!r} on the branch={c.theirs!r}"
            for c in conflicts[:5]
        )
        keys = len({tuple(c.key.values()) for c in conflicts})
        raise MergeConflictError(
            f"{what}: {keys:,} key(s) were changed differently by a commit that landed while this one "
            f"was prepared ({len(conflicts):,} conflicting cell(s)), nothing was committed: "
            f"{shown}{' …' if len(conflicts) > 5 else ''}. Read the branch again and commit the rows "
            "you mean, or commit on a branch and merge it with a policy",
            conflicts,
        )
    overlap = compare(side(both_theirs, "after", key, target), merged, key, target, buckets)
    rebased = pa.concat_tables([without_keys(ours, theirs, key), as_schema(overlap, layout)])
    return Rebased(rebased, target, untouched=False)
