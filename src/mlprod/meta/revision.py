"""The newest migration of the metadata schema, read from the migration files without SQLAlchemy or Alembic.

Every command opening a workspace compares the database's revision with it; the read-only fast path
(``mlprod.meta.fast_read``) does too, and must not import SQLAlchemy to do so.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlprod.errors import DatabaseError

MIGRATIONS = Path(__file__).with_name("migrations")
_REVISION = re.compile(r"^(down_revision|revision)\b[^=\n]*=(.*)$", re.MULTILINE)


def head_revision() -> str:
    """The newest migration: the one revision no other migration names as its ``down_revision``."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for field, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            (revisions if field == "revision" else parents).update(re.findall(r"['\"]([^'\"]+)['\"]", value))
    heads = revisions - parents
    if len(heads) != 1:
        raise DatabaseError(
            f"the migrations in {MIGRATIONS} have {len(heads)} heads ({sorted(heads)}), not one"
        )
    return heads.pop()


__all__ = ["MIGRATIONS", "head_revision"]
