"""Telling a full disk apart from other I/O failures, and saying so in one clear sentence.

A full disk shows up as ``OSError`` errno 28 (ENOSPC) or 122 (EDQUOT) from a file write, and as
SQLite's "database or disk is full" — or "disk I/O error" when even its shared-memory index cannot
grow. ``full_error`` turns any of them into a ``StorageFullError`` naming what was being written,
where, and how many bytes are free.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mlprod.errors import StorageFullError

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
NEARLY_FULL_BYTES = 1 << 20
"""Below this much free space an SQLite I/O error is taken to be the disk being full."""


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer can still use on the filesystem holding ``path`` (None if unknown)."""
    here = Path(path)
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        stat = os.statvfs(here)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


def is_disk_full(exc: BaseException) -> bool:
    """True for an ``OSError`` that means no space (or no quota) is left."""
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def nearly_full(path: str | os.PathLike[str]) -> bool:
    free = free_bytes(path)
    return free is not None and free < NEARLY_FULL_BYTES


def full_error(
    what: str, where: str | os.PathLike[str], *, after: str = "nothing was committed"
) -> StorageFullError:
    """The error to raise when writing ``what`` at ``where`` ran out of space."""
    free = free_bytes(where)
    shown = "an unknown number of" if free is None else f"{free:,}"
    return StorageFullError(f"disk full {what} at {where}: {shown} bytes free; free space and retry; {after}")
