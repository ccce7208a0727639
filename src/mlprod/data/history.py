"""The metadata side of versioned tables: tables, commits, branches and tags in the metadata DB.

Objects (buckets, change sets, manifests) are immutable and named by content; what moves is a
branch, and it moves only by compare-and-swap, so two writers can never both win.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlprod.errors import AlreadyExistsError, ConflictError, InvalidInputError, NotFoundError
from mlprod.meta.tables import data_commits, data_refs, data_tables

Guard = Callable[[Connection], None]
"""Runs inside a ref-moving transaction after its writes; raising rolls the whole transaction back."""

BRANCH = "branch"
TAG = "tag"


@dataclass(frozen=True)
class TableInfo:
    """A versioned table: its key, bucket count, optional label column and stored expectations."""

    name: str
    key: tuple[str, ...]
    buckets: int
    label: str | None
    description: str
    expectations: dict[str, Any] | None
    created_at: datetime
    author: str


@dataclass(frozen=True)
class CommitInfo:
    """One commit as listed by ``log``."""

    id: str
    table: str
    parents: tuple[str, ...]
    operation: str
    message: str
    author: str
    created_at: datetime
    num_rows: int
    changes: dict[str, int]

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class Ref:
    """A branch (moves with commits) or a tag (fixed) of a table."""

    name: str
    kind: str
    commit_id: str
    updated_at: datetime


class History:
    """Queries and updates of the table/commit/ref rows."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def table(self, name: str) -> TableInfo:
        with self._engine.connect() as conn:
            row = conn.execute(data_tables.select().where(data_tables.c.name == name)).first()
        if row is None:
            known = ", ".join(self.table_names()) or "none"
            raise NotFoundError(f"table {name!r} not found (tables: {known})")
        return _table(row._mapping)

    def tables(self) -> list[TableInfo]:
        with self._engine.connect() as conn:
            rows = conn.execute(data_tables.select().order_by(data_tables.c.name))
            return [_table(row._mapping) for row in rows]

    def table_names(self) -> list[str]:
        with self._engine.connect() as conn:
            return list(conn.scalars(sa.select(data_tables.c.name).order_by(data_tables.c.name)))

    def create_table(
        self, info: TableInfo, root: CommitInfo, branch: str, *, guard: Guard | None = None
    ) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    data_tables.insert().values(
                        name=info.name,
                        key=list(info.key),
                        buckets=info.buckets,
                        label=info.label,
                        description=info.description,
                        expectations=info.expectations,
                        created_at=info.created_at,
                        author=info.author,
                    )
                )
                self._insert_commit(conn, root)
                self._insert_ref(conn, info.name, branch, BRANCH, root.id)
                if guard is not None:
                    guard(conn)
        except sa.exc.IntegrityError as exc:
            raise AlreadyExistsError(f"table {info.name!r} already exists") from exc

    def drop_table(self, name: str) -> None:
        """Forget a table's rows in the metadata DB (its objects become garbage for ``gc``)."""
        with self._engine.begin() as conn:
            conn.execute(data_refs.delete().where(data_refs.c.table_name == name))
            conn.execute(data_commits.delete().where(data_commits.c.table_name == name))
            conn.execute(data_tables.delete().where(data_tables.c.name == name))

    def set_expectations(self, table: str, expectations: dict[str, Any] | None) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                data_tables.update().where(data_tables.c.name == table).values(expectations=expectations)
            )

    def commit(
        self, table: str, branch: str, expected: str, new: CommitInfo, *, guard: Guard | None = None
    ) -> None:
        """Record ``new`` and move ``branch`` from ``expected`` to it, or raise if the branch moved.

        ``guard`` (the gc fence) runs last in the same transaction and can still call it off.
        """
        with self._engine.begin() as conn:
            self._insert_commit(conn, new)
            self._swap(conn, table, branch, expected, new.id)
            if guard is not None:
                guard(conn)

    def move_branch(self, table: str, branch: str, expected: str, new: str) -> None:
        """Move ``branch`` to an existing commit ``new`` if it is still at ``expected`` (fast-forward)."""
        with self._engine.begin() as conn:
            self._swap(conn, table, branch, expected, new)

    def create_ref(self, table: str, name: str, kind: str, commit_id: str) -> None:
        try:
            with self._engine.begin() as conn:
                self._insert_ref(conn, table, name, kind, commit_id)
        except sa.exc.IntegrityError as exc:
            existing = self.ref(table, name)
            raise AlreadyExistsError(
                f"table {table!r} already has a {existing.kind} named {name!r} (at {existing.commit_id[:12]})"
            ) from exc

    def delete_ref(self, table: str, name: str, kind: str) -> None:
        with self._engine.begin() as conn:
            gone = conn.execute(
                data_refs.delete().where(
                    data_refs.c.table_name == table, data_refs.c.name == name, data_refs.c.kind == kind
                )
            )
        if gone.rowcount != 1:
            raise NotFoundError(f"table {table!r} has no {kind} named {name!r}")

    def ref(self, table: str, name: str) -> Ref:
        for ref in self.refs(table):
            if ref.name == name:
                return ref
        known = ", ".join(r.name for r in self.refs(table))
        raise NotFoundError(f"table {table!r} has no branch or tag {name!r} (refs: {known})")

    def refs(self, table: str) -> list[Ref]:
        query = data_refs.select().where(data_refs.c.table_name == table).order_by(data_refs.c.name)
        with self._engine.connect() as conn:
            return [Ref(row.name, row.kind, row.commit_id, row.updated_at) for row in conn.execute(query)]

    def get_commit(self, table: str, commit_id: str) -> CommitInfo:
        """A commit by full id or unique prefix (at least 4 hex digits)."""
        if len(commit_id) < 4 or any(c not in "0123456789abcdef" for c in commit_id):
            raise NotFoundError(f"table {table!r} has no branch, tag or commit {commit_id!r}")
        query = data_commits.select().where(
            data_commits.c.table_name == table, data_commits.c.id.startswith(commit_id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query.limit(2)).fetchall()
        if not rows:
            raise NotFoundError(f"table {table!r} has no branch, tag or commit {commit_id!r}")
        if len(rows) > 1:
            raise InvalidInputError(
                f"commit prefix {commit_id!r} is ambiguous in table {table!r}; give more digits"
            )
        return _commit(rows[0]._mapping)

    def commits(self, table: str) -> dict[str, CommitInfo]:
        query = data_commits.select().where(data_commits.c.table_name == table)
        with self._engine.connect() as conn:
            return {row.id: _commit(row._mapping) for row in conn.execute(query)}

    def all_commit_ids(self) -> list[str]:
        with self._engine.connect() as conn:
            return list(conn.scalars(sa.select(data_commits.c.id)))

    def first_parent_chain(self, table: str, head: str) -> Iterator[CommitInfo]:
        """``head``, its first parent, that one's first parent, … back to the table's creation."""
        commits = self.commits(table)
        current: str | None = head
        while current is not None:
            info = commits[current]
            yield info
            current = info.parents[0] if info.parents else None

    def merge_base(self, table: str, ours: str, theirs: str) -> str:
        """The nearest common ancestor of two commits (by creation time among common ancestors)."""
        commits = self.commits(table)
        common = _ancestors(commits, ours) & _ancestors(commits, theirs)
        return max(common, key=lambda c: (commits[c].created_at, c))

    def _swap(self, conn: Connection, table: str, branch: str, expected: str, new: str) -> None:
        moved = conn.execute(
            data_refs.update()
            .where(
                data_refs.c.table_name == table,
                data_refs.c.name == branch,
                data_refs.c.kind == BRANCH,
                data_refs.c.commit_id == expected,
            )
            .values(commit_id=new, updated_at=datetime.now(UTC))
        )
        if moved.rowcount != 1:
            now = conn.scalar(
                sa.select(data_refs.c.commit_id).where(
                    data_refs.c.table_name == table, data_refs.c.name == branch
                )
            )
            raise ConflictError(
                f"table {table!r}: branch {branch!r} moved from {expected[:12]} to "
                f"{(now or 'nothing')[:12]} while this commit was prepared; rebase or merge, then retry"
            )

    def _insert_commit(self, conn: Connection, info: CommitInfo) -> None:
        conn.execute(
            data_commits.insert().values(
                id=info.id,
                table_name=info.table,
                parents=list(info.parents),
                operation=info.operation,
                message=info.message,
                author=info.author,
                created_at=info.created_at,
                num_rows=info.num_rows,
                changes=info.changes,
            )
        )

    def _insert_ref(self, conn: Connection, table: str, name: str, kind: str, commit_id: str) -> None:
        conn.execute(
            data_refs.insert().values(
                table_name=table, name=name, kind=kind, commit_id=commit_id, updated_at=datetime.now(UTC)
            )
        )


def _ancestors(commits: dict[str, CommitInfo], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(commits[current].parents)
    return seen


def _table(row: Any) -> TableInfo:
    return TableInfo(
        name=row["name"],
        key=tuple(row["key"]),
        buckets=row["buckets"],
        label=row["label"],
        description=row["description"],
        expectations=row["expectations"],
        created_at=row["created_at"],
        author=row["author"],
    )


def _commit(row: Any) -> CommitInfo:
    return CommitInfo(
        id=row["id"],
        table=row["table_name"],
        parents=tuple(row["parents"]),
        operation=row["operation"],
        message=row["message"],
        author=row["author"],
        created_at=row["created_at"],
        num_rows=row["num_rows"],
        changes=dict(row["changes"]),
    )
