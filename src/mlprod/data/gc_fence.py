"""The gc fence: one metadata-DB row that orders garbage-collection sweeps against commits.

A sweep bumps ``epoch`` and holds a lease (``lease_until``) while it may delete; a commit reads the
row before writing any object (its *mark*) and, in the same transaction that moves its branch,
re-reads ``epoch`` under a share lock. If a sweep started since the mark, or one was running at the
mark, the transaction rolls back (``FenceCrossed``): the commit waits for the sweep to end, puts
back from memory whatever of its objects the sweep removed, and tries again with a fresh mark.
Why this makes loss impossible is argued in ``mlprod.data.gc``.

Examples:
    >>> import tempfile
    >>> from mlprod.workspace import Workspace
    >>> ws = Workspace.init(tempfile.mkdtemp())
    >>> fence = GcFence(ws.engine)
    >>> before = fence.mark()
    >>> with fence.sweep("gc-1") as sweep:
    ...     fence.mark().busy
    True
    >>> fence.mark().epoch == before.epoch + 1, fence.mark().busy
    (True, False)
    >>> ws.close()
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlprod.artifacts import ArtifactStore
from mlprod.errors import ArtifactNotFoundError, ConflictError, GcInProgressError
from mlprod.meta.tables import data_gc_fence

LEASE_SECONDS = 120.0
"""How long a sweep's lease lasts; a live sweep renews it once a quarter of it has passed."""
WAIT_SECONDS = 600.0
"""How long a commit crossed by a sweep waits for it to end before giving up (committing nothing)."""
HOLD_SECONDS = 5.0
"""How long a commit that a sweep crossed keeps new sweeps from starting while it records itself."""
KEEP_BYTES = 256 * 2**20
"""Bytes of its own objects a commit keeps in memory to put back if a sweep removes them."""
_ATTEMPTS = 5
_ROW = data_gc_fence.c.id == 1
_lease_until = data_gc_fence.c.lease_until
_hold_until = data_gc_fence.c.commit_hold_until


class FenceCrossed(Exception):  # noqa: N818 - a signal caught inside mlprod, never shown to a user
    """A sweep overlapped a commit's writes; raised inside its transaction so the branch stays put."""


@dataclass(frozen=True)
class FenceMark:
    """The fence as a commit found it before writing: the sweep epoch, and whether one was running."""

    epoch: int
    busy: bool
    owner: str | None
    started_at: datetime | None


class GcFence:
    """Reads and moves the fence row of one metadata database."""

    def __init__(self, engine: Engine, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self._engine = engine
        self.lease_seconds = lease_seconds

    def mark(self) -> FenceMark:
        """The fence now; take it before the first object write of a commit."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(data_gc_fence).where(_ROW)).one()
        busy = row.lease_until is not None and row.lease_until > datetime.now(UTC)
        return FenceMark(row.epoch, busy, row.owner if busy else None, row.started_at if busy else None)

    def check(self, conn: Connection, mark: FenceMark) -> None:
        """Inside the branch-moving transaction (after its writes): raise if a sweep crossed ``mark``."""
        # FOR SHARE (PostgreSQL) makes a sweep's epoch bump wait for this transaction, and this read
        # wait for an uncommitted bump; on SQLite the transaction already holds the write lock.
        query = sa.select(data_gc_fence.c.epoch).where(_ROW).with_for_update(read=True)
        if conn.execute(query).scalar_one() != mark.epoch or mark.busy:
            raise FenceCrossed

    def wait_quiet(self, timeout: float = WAIT_SECONDS) -> FenceMark:
        """Wait until no sweep holds a live lease, then return a fresh mark.

        Taking that mark also holds off new sweeps for ``HOLD_SECONDS`` (they wait, see ``sweep``),
        so a commit crossed once records itself next instead of racing a gc that runs in a loop.
        """
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            now = datetime.now(UTC)
            with self._engine.begin() as conn:
                held = conn.execute(
                    data_gc_fence.update()
                    .where(_ROW, sa.or_(_lease_until.is_(None), _lease_until <= now))
                    .values(commit_hold_until=now + timedelta(seconds=HOLD_SECONDS))
                )
                row = conn.execute(sa.select(data_gc_fence).where(_ROW)).one()
            if held.rowcount == 1:
                return FenceMark(row.epoch, False, None, None)
            if time.monotonic() > deadline:
                started = f"{row.started_at:%Y-%m-%d %H:%M:%S} UTC" if row.started_at else "?"
                raise GcInProgressError(
                    f"a data gc ({row.owner}) has been sweeping since {started}; this commit waited "
                    f"{timeout:.0f} s for it and recorded nothing; retry when the gc has finished"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def sweep(self, owner: str) -> Sweep:
        """Start a sweep: bump the epoch and take the lease, or raise if another sweep holds it.

        A sweep waits (at most ``HOLD_SECONDS``) while a crossed commit holds the fence to record itself.
        """
        while True:
            now = datetime.now(UTC)
            with self._engine.begin() as conn:
                taken = conn.execute(
                    data_gc_fence.update()
                    .where(
                        _ROW,
                        sa.or_(_lease_until.is_(None), _lease_until <= now),
                        sa.or_(_hold_until.is_(None), _hold_until <= now),
                    )
                    .values(
                        epoch=data_gc_fence.c.epoch + 1,
                        lease_until=now + timedelta(seconds=self.lease_seconds),
                        owner=owner[:200],
                        started_at=now,
                    )
                )
                row = conn.execute(sa.select(data_gc_fence).where(_ROW)).one()
            if taken.rowcount == 1:
                return Sweep(self._engine, row.epoch, self.lease_seconds)
            if row.lease_until is not None and row.lease_until > now:
                raise GcInProgressError(
                    f"another data gc ({row.owner}) has been sweeping since "
                    f"{row.started_at:%Y-%m-%d %H:%M:%S} UTC; wait for it to finish (if it was killed, "
                    f"its lease ends at {row.lease_until:%H:%M:%S} UTC and gc can run again then)"
                )
            time.sleep(0.05)  # a commit crossed by the last sweep is recording itself


class Sweep:
    """A running sweep's lease: ``hold()`` before every deletion, ``end()`` (or leave ``with``) after."""

    def __init__(self, engine: Engine, epoch: int, lease_seconds: float) -> None:
        self._engine = engine
        self.epoch = epoch
        self._lease = lease_seconds
        self._renewed = time.monotonic()

    def hold(self) -> None:
        """Make sure the lease is still ours with at least three quarters of it left, or raise."""
        if time.monotonic() - self._renewed < self._lease / 4:
            return
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            renewed = conn.execute(
                data_gc_fence.update()
                .where(_ROW, data_gc_fence.c.epoch == self.epoch, data_gc_fence.c.lease_until > now)
                .values(lease_until=now + timedelta(seconds=self._lease))
            )
        if renewed.rowcount != 1:
            raise GcInProgressError(
                f"this gc lost its sweep lease (it was paused for more than {self._lease:.0f} s or another "
                "gc took over) and stopped deleting; what it removed was unreferenced; run gc again"
            )
        self._renewed = time.monotonic()

    def end(self) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                data_gc_fence.update()
                .where(_ROW, data_gc_fence.c.epoch == self.epoch)
                .values(lease_until=None)
            )

    def __enter__(self) -> Sweep:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end()


class KeptWrites(ArtifactStore):
    """The table object store, keeping the bytes of what a commit puts so it can restore what a sweep
    took. Up to ``budget`` bytes are kept (a commit rewriting a whole large table keeps only the
    first ones); an object beyond it that a sweep removed makes the commit fail cleanly instead."""

    def __init__(self, objects: ArtifactStore, *, budget: int | None = None) -> None:
        super().__init__(objects.root)
        self.kept: dict[str, bytes] = {}
        self.written: set[str] = set()
        self._budget = KEEP_BYTES if budget is None else budget

    def put_bytes(self, data: bytes) -> str:
        sha = super().put_bytes(data)
        self.written.add(sha)
        if sha not in self.kept and len(data) <= self._budget:
            self.kept[sha] = data
            self._budget -= len(data)
        return sha

    def restore(self, needed: Iterable[str]) -> int:
        """Put back every needed object a sweep removed; return how many. Others must exist."""
        restored = 0
        for sha in needed:
            if self.exists(sha):
                continue
            if sha in self.kept:
                super().put_bytes(self.kept[sha])
                restored += 1
            elif sha in self.written:
                raise ConflictError(
                    f"a concurrent data gc removed object {sha} that this commit wrote, and the commit "
                    f"did not keep its bytes (it keeps up to {KEEP_BYTES:,} bytes in memory); nothing was "
                    "committed; retry the commit"
                )
            else:
                raise ArtifactNotFoundError(
                    f"object {sha} that the new version needs is missing from {self.root} and this "
                    "commit did not write it, so it cannot put it back; nothing was committed. "
                    "Run `mlprod data fsck` to find the damage"
                )
        return restored


def record_fenced(
    fence: GcFence,
    mark: FenceMark,
    record: Callable[[Callable[[Connection], None]], None],
    restore: Callable[[], object],
) -> None:
    """Run ``record(guard)`` (the branch-moving transaction) until no sweep crossed it.

    Between attempts: wait for the sweep to end, take a new mark, then ``restore`` the objects.
    """
    for _ in range(_ATTEMPTS):
        try:
            record(functools.partial(_check, fence, mark))
            return
        except FenceCrossed:
            mark = fence.wait_quiet()
            restore()
    raise GcInProgressError(
        f"data gc sweeps started {_ATTEMPTS} times while this commit was being recorded; nothing was "
        "committed; retry when gc is not running in a loop"
    )


def _check(fence: GcFence, mark: FenceMark, conn: Connection) -> None:
    fence.check(conn, mark)
