"""Datasets as immutable, numbered snapshots: each version is one Parquet blob in the artifact store.

This is the walking-skeleton form of versioned data: whole-table snapshots, content-addressed, so
committing identical data twice creates no new version. Keyed buckets, diff and merge replace it.

Examples:
    >>> import tempfile, pyarrow as pa
    >>> from mlprod.workspace import Workspace
    >>> ws = Workspace.init(tempfile.mkdtemp())
    >>> store = DatasetStore(ws)
    >>> store.commit("points", pa.table({"x": [1, 2, 3]}), message="first").version
    1
    >>> store.read("points").num_rows
    3
    >>> ws.close()
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.identity import current_user
from mlprod.meta.tables import dataset_versions
from mlprod.names import check_name
from mlprod.workspace import Workspace

_COMMIT_RETRIES = 5


@dataclass(frozen=True)
class DatasetVersion:
    """One committed snapshot of a dataset."""

    dataset: str
    version: int
    artifact_sha256: str
    num_rows: int
    schema: dict[str, str]
    message: str
    author: str
    created_at: datetime


class DatasetStore:
    """Commit and read dataset snapshots in one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def commit(self, name: str, table: pa.Table, *, message: str = "") -> DatasetVersion:
        """Store ``table`` as the next version of ``name``; identical data returns the latest one."""
        check_name(name, "dataset")
        if table.num_columns == 0:
            raise InvalidInputError(f"dataset {name!r}: cannot commit a table with no columns")
        sha = self._ws.artifacts.put_bytes(_to_parquet(table))
        for _ in range(_COMMIT_RETRIES):
            latest = self._latest(name)
            if latest is not None and latest.artifact_sha256 == sha:
                return latest
            row = {
                "dataset": name,
                "version": (latest.version if latest else 0) + 1,
                "artifact_sha256": sha,
                "num_rows": table.num_rows,
                "schema": {field.name: str(field.type) for field in table.schema},
                "message": message,
                "author": current_user(),
                "created_at": datetime.now(UTC),
            }
            try:
                with self._ws.engine.begin() as conn:
                    conn.execute(dataset_versions.insert().values(**row))
            except IntegrityError:
                continue  # another writer took this version number; number ours after it
            return DatasetVersion(**row)
        raise InvalidInputError(f"dataset {name!r}: too many concurrent commits, try again")

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        """The given version of ``name`` (the latest when ``version`` is None)."""
        if version is None:
            found = self._latest(name)
        else:
            query = dataset_versions.select().where(
                dataset_versions.c.dataset == name, dataset_versions.c.version == version
            )
            found = self._one(query)
        if found is None:
            known = ", ".join(self.names()) or "none"
            what = f"dataset {name!r}" + (f" version {version}" if version is not None else "")
            raise NotFoundError(f"{what} not found (datasets: {known})")
        return found

    def read(self, name: str, version: int | None = None) -> pa.Table:
        """The snapshot's rows, verified against their sha256."""
        found = self.get(name, version)
        return pq.read_table(io.BytesIO(self._ws.artifacts.get_bytes(found.artifact_sha256)))

    def names(self) -> list[str]:
        query = sa.select(dataset_versions.c.dataset).distinct().order_by(dataset_versions.c.dataset)
        with self._ws.engine.connect() as conn:
            return list(conn.scalars(query))

    def versions(self, name: str | None = None) -> list[DatasetVersion]:
        """All versions, of one dataset or of all, oldest first."""
        query = dataset_versions.select().order_by(dataset_versions.c.dataset, dataset_versions.c.version)
        if name is not None:
            query = query.where(dataset_versions.c.dataset == name)
        with self._ws.engine.connect() as conn:
            return [_version(row._mapping) for row in conn.execute(query)]

    def _latest(self, name: str) -> DatasetVersion | None:
        query = (
            dataset_versions.select()
            .where(dataset_versions.c.dataset == name)
            .order_by(dataset_versions.c.version.desc())
            .limit(1)
        )
        return self._one(query)

    def _one(self, query: sa.Select[Any]) -> DatasetVersion | None:
        with self._ws.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _version(row._mapping)


def _version(row: Any) -> DatasetVersion:
    return DatasetVersion(**{k: v for k, v in row.items() if k != "id"})


def _to_parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
