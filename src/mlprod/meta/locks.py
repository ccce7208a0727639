"""Named exclusive locks shared by every process that uses one metadata database.

Compare-and-swap alone keeps writers correct but not fair: a writer whose commit takes long to land
can lose the race to quick ones again and again. A short lock around the moment a branch moves lets
each writer land in turn. The lock dies with its holder: PostgreSQL releases a session's advisory
lock when the connection closes, and the kernel releases a ``flock`` when the process exits, so a
killed writer never leaves a branch locked. SQLite is a file on one machine, so a lock file next to
it reaches every process that can open the database. Waiters poll at a fixed short interval (never a
growing one), so a waiter that has waited long has the same chance as one that just arrived.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mlprod.errors import ConflictError, DatabaseError

POLL_SECONDS = 0.002


@contextmanager
def exclusive(engine: Engine, name: str, *, timeout: float) -> Iterator[None]:
    """Hold the lock ``name`` for the block; raise ``ConflictError`` after ``timeout`` seconds of waiting.

    Databases other than PostgreSQL and file-backed SQLite get no lock (the block runs unlocked).
    """
    backend = engine.url.get_backend_name()
    database = engine.url.database
    if backend == "postgresql":
        with _advisory_lock(engine, name, timeout):
            yield
    elif backend == "sqlite" and database and database != ":memory:":
        with _file_lock(Path(f"{database}-locks") / _digest(name), name, timeout):
            yield
    else:
        yield


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:32]


@contextmanager
def _file_lock(path: Path, name: str, timeout: float) -> Iterator[None]:
    path.parent.mkdir(exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _timed_out(name, timeout) from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@contextmanager
def _advisory_lock(engine: Engine, name: str, timeout: float) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        try:
            conn.execute(sa.select(sa.func.set_config("lock_timeout", f"{int(timeout * 1000)}ms", False)))
            conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
            conn.commit()
        except sa.exc.OperationalError as exc:
            conn.invalidate()  # a session whose lock request failed is not reused
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise _timed_out(name, timeout) from exc
            raise DatabaseError(f"{name}: taking the commit lock failed: {exc}") from exc
        try:
            yield
        finally:
            try:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                conn.execute(sa.text("RESET lock_timeout"))
                conn.commit()
            except sa.exc.SQLAlchemyError:
                conn.invalidate()  # closing the session releases its advisory locks


def _timed_out(name: str, timeout: float) -> ConflictError:
    return ConflictError(
        f"{name}: another writer held the commit lock for more than {timeout:g} s; "
        "it may be stuck: retry later, or find the process that holds it"
    )
