"""Throw-away PostgreSQL databases, for tests and benchmarks that need a metadata DB of their own.

Each gets a fresh database on the server ``admin_url`` names, dropped (even with sessions still open)
when the ``with`` block ends, so runs never see each other's tables.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import sqlalchemy as sa


@contextlib.contextmanager
def scratch_database(admin_url: str, *, prefix: str = "mlprod") -> Iterator[str]:
    """The URL of a new, empty database on ``admin_url``'s server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
