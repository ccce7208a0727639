"""Garbage collection of table objects no commit refers to.

A commit writes its objects before its manifest and moves the branch last, so a writer killed on the
way leaves objects nobody refers to. They are harmless, and ``collect_garbage`` removes them once they
are older than a grace period (so that a commit still being written is never robbed of its files).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlprod.data.manifest import Manifest
from mlprod.data.tables import TableStore
from mlprod.errors import InvalidInputError

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class GcReport:
    """How many objects were kept, removed (and their bytes), and temporary files cleared."""

    kept: int
    removed: int
    removed_bytes: int
    temporaries: int


def collect_garbage(
    store: TableStore, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False
) -> GcReport:
    """Delete table objects that no recorded commit needs and that are older than ``grace_seconds``."""
    if grace_seconds < 0:
        raise InvalidInputError(f"grace period must be 0 or more seconds, got {grace_seconds}")
    live: set[str] = set()
    for commit_id in store.history.all_commit_ids():
        live.add(commit_id)
        if store.objects.exists(commit_id):
            live |= Manifest.from_bytes(store.objects.get_bytes(commit_id)).objects()
    cutoff = time.time() - grace_seconds
    kept = removed = removed_bytes = 0
    for sha in list(store.objects):
        path = store.objects.path_of(sha)
        if sha in live:
            kept += 1
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if stat.st_mtime > cutoff:
            kept += 1
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
        removed += 1
        removed_bytes += stat.st_size
    temporaries = 0 if dry_run else store.objects.remove_stale_temporaries(grace_seconds)
    return GcReport(kept, removed, removed_bytes, temporaries)
