"""Rows found by a prefix of their id, as users type ids: at least 6 characters, and unambiguous."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mlprod.errors import InvalidInputError, NotFoundError

MIN_ID_PREFIX = 6


def row_by_id_prefix(engine: sa.Engine, table: sa.Table, prefix: str, what: str) -> Any:
    """The one row of ``table`` whose ``id`` starts with ``prefix``; ``what`` names it in errors."""
    if len(prefix) < MIN_ID_PREFIX:
        raise InvalidInputError(
            f"{what} id {prefix!r} is too short: give at least {MIN_ID_PREFIX} characters"
        )
    with engine.connect() as conn:
        rows = conn.execute(table.select().where(table.c.id.startswith(prefix)).limit(2)).all()
    if not rows:
        raise NotFoundError(f"{what} {prefix!r} not found")
    if len(rows) > 1:
        raise InvalidInputError(f"{what} id {prefix!r} is ambiguous: give more characters")
    return rows[0]
