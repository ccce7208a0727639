"""Garbage collection of table objects no commit refers to — and why it can never lose a commit.

A commit writes its objects, then its manifest, and records itself (moving its branch) last, so a
writer killed on the way leaves objects nobody refers to; ``collect_garbage`` removes them. Two
rules make that safe against any interleaving with commits in flight, not merely unlikely to hurt:

1. **Nothing it cannot see.** The live set is every object of every recorded commit. If any
   commit's manifest is missing, corrupted or unparsable, what that commit needs is unknown, so gc
   raises ``DamagedHistoryError`` naming the commits and deletes nothing (``mlprod data fsck``
   reports all damage).

2. **The fence** (``mlprod.data.gc_fence``, one row in the metadata DB). A sweep first bumps the
   row's ``epoch`` and takes a lease, *then* reads the history, then deletes (renewing the lease; a
   sweep that lost it stops). A commit reads the row (its mark) before writing its first object,
   and in the very transaction that records it and moves its branch re-reads ``epoch`` (share lock
   on PostgreSQL; SQLite's writer lock serialises the two). Let S be any sweep and C any commit:

   - C's transaction serialises *before* S's bump: S reads the history after its bump, so it sees
     C, and every object of C (its own and its parents') is live for S. S deletes none of them.
   - C's transaction serialises *after* S's bump: if S started after C's mark, C sees a new epoch;
     if S was already sweeping at C's mark, the mark says busy. Either way C's transaction rolls
     back and its branch does not move. C then waits until no sweep holds a lease, takes a new
     mark (which also keeps new sweeps waiting for 5 s, so a gc run in a loop cannot starve C),
     and only then checks every object its manifest names, putting back from memory any that
     a sweep removed (C keeps the bytes of what it wrote or reused, up to 256 MB; past that, a
     removed object makes C fail with ``ConflictError``, nothing committed, to be retried). S has
     finished deleting, so what C checked stays; a sweep starting after the new mark is caught
     the same way.

   So a branch only ever moves to a manifest whose objects all exist at that moment and that no
   sweep already running can still delete: reused "old" objects (the issue's race: gc decided to
   delete a killed writer's bucket, a retried commit reused it, gc unlinked it) are covered exactly
   like new ones. Objects of recorded commits are never deleted, whatever their age.

   Assumptions, stated: a sweep renews its lease when a quarter has passed, so it deletes only with
   three quarters (90 s by default) still left; a process stalled longer than that between its
   clock reading and its next unlink, or host clocks further apart than that, are outside the
   guarantee. A sweep killed mid-way holds the lease until it expires; commits crossed by it wait.

The grace period is no longer what protects commits in flight; it keeps debris around for a while
(for inspection, or for a writer that is not mlprod's). Temporary files of interrupted writes go
once they are an hour old whatever the grace, so a write in progress is never cut off; gc
clears those of the workspace artifact store (models) too, since opening a workspace writes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mlprod.data.gc_fence import Sweep
from mlprod.data.manifest import Manifest
from mlprod.data.tables import TableStore
from mlprod.errors import ArtifactError, DamagedHistoryError, InvalidInputError, UnknownObjectsError

DEFAULT_GRACE_SECONDS = 3600.0
TEMPORARY_MIN_AGE_SECONDS = 3600.0


@dataclass(frozen=True)
class Garbage:
    """One unreferenced object: its sha256, size and age."""

    sha256: str
    size: int
    age_seconds: float


@dataclass(frozen=True)
class GcReport:
    """How many objects were kept, removed (and their bytes), and temporary files cleared.

    ``objects`` lists what was removed (or, in a dry run, what would be).
    """

    kept: int
    removed: int
    removed_bytes: int
    temporaries: int
    objects: tuple[Garbage, ...] = ()
    known: int = 0
    """Objects in the store that the metadata database's commits need."""

    @property
    def exceeds_known(self) -> bool:
        """True when the sweep deletes (or would delete) more objects than the database knows."""
        return self.removed > self.known


def collect_garbage(
    store: TableStore,
    *,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    dry_run: bool = False,
    yes_delete_unknown: bool = False,
) -> GcReport:
    """Delete table objects that no recorded commit needs and that are older than ``grace_seconds``.

    When that is more objects than the database knows (those its commits need), the database is
    likely not the one the store was written with, so gc raises ``UnknownObjectsError`` (how many
    objects and bytes would go) and deletes nothing, unless ``yes_delete_unknown`` confirms it.
    A dry run writes nothing (not even the fence) and lists what would go; it never refuses
    (``GcReport.exceeds_known`` tells whether the real run would).
    """
    if grace_seconds < 0:
        raise InvalidInputError(f"grace period must be 0 or more seconds, got {grace_seconds}")
    if dry_run:
        return _sweep(store, grace_seconds, None, confirmed=True)
    with store.fence.sweep(f"{socket.gethostname()} pid {os.getpid()}") as sweep:
        report = _sweep(store, grace_seconds, sweep, confirmed=yes_delete_unknown)
    age = max(grace_seconds, TEMPORARY_MIN_AGE_SECONDS)
    temporaries = store.objects.remove_stale_temporaries(age)
    temporaries += store.workspace.artifacts.remove_stale_temporaries(age)  # models' writes too
    return dataclasses.replace(report, temporaries=temporaries)


def live_objects(store: TableStore) -> set[str]:
    """Every object a recorded commit needs (manifests included), or ``DamagedHistoryError``."""
    live: set[str] = set()
    damaged: list[str] = []
    for table in store.history.table_names():
        for commit_id in sorted(store.history.commits(table)):
            live.add(commit_id)
            try:
                live |= Manifest.from_bytes(store.objects.get_bytes(commit_id)).objects()
            except ArtifactError as exc:
                damaged.append(f"{table} commit {commit_id[:12]}: {exc}")
            except (ValueError, KeyError, TypeError) as exc:
                damaged.append(f"{table} commit {commit_id[:12]}: manifest does not parse ({exc})")
    if damaged:
        shown = "; ".join(damaged[:5]) + (f"; and {len(damaged) - 5} more" if len(damaged) > 5 else "")
        raise DamagedHistoryError(
            f"gc deleted nothing: {len(damaged)} commit(s) cannot be read completely, so what they need "
            f"is unknown: {shown}. Run `mlprod data fsck` for the full report, restore the manifests "
            "from a backup (or drop the damaged table), then run gc again"
        )
    return live


def _sweep(store: TableStore, grace_seconds: float, sweep: Sweep | None, *, confirmed: bool) -> GcReport:
    live = live_objects(store)
    now = time.time()
    cutoff = now - grace_seconds
    kept = known = 0
    garbage: list[Garbage] = []
    for sha in list(store.objects):
        if sha in live:
            kept += 1
            known += 1
            continue
        try:
            stat = store.objects.path_of(sha).stat()
        except FileNotFoundError:
            continue
        if stat.st_mtime > cutoff:
            kept += 1
            continue
        garbage.append(Garbage(sha, stat.st_size, now - stat.st_mtime))
    report = GcReport(kept, len(garbage), sum(g.size for g in garbage), 0, tuple(garbage), known)
    if report.exceeds_known and not confirmed:
        raise UnknownObjectsError(
            f"gc deleted nothing: it would delete {report.removed:,} object(s) ({report.removed_bytes:,} "
            f"bytes) from {store.objects.root}, more than the {known:,} the metadata database "
            f"{store.workspace.redacted_database_url} knows. Check that the workspace uses the database the "
            "tables were written with (`mlprod info`, `mlprod data list`); if these objects really are "
            "garbage, run `mlprod data gc --yes-delete-unknown` (yes_delete_unknown=True)"
        )
    if sweep is not None:
        for g in garbage:
            sweep.hold()
            _remove(store.objects.path_of(g.sha256))
    return report


def _remove(path: Path) -> None:
    """Unlink one object (a named seam: tests pause a sweep here to interleave a commit)."""
    path.unlink(missing_ok=True)
