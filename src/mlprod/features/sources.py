"""Feature sources as DuckDB relations: files are scanned (out of core), tables and frames registered.

Each source is checked before any join: declared columns exist, time columns are timestamps, and
naive and time-zone-aware timestamps are not mixed (a naive time is taken as UTC only when every time
involved is naive: mixing them is an error, not a guess).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlprod.data import TableStore
from mlprod.data.columns import check_names
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.features.definitions import Source, TableSource
from mlprod.lazy import lazy_module
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
else:
    duckdb = lazy_module("duckdb")
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")
    pacsv = lazy_module("pyarrow.csv")
    pq = lazy_module("pyarrow.parquet")

TIMESTAMP_TYPES = ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE",
                   "TIMESTAMPTZ_NS")  # fmt: skip


@dataclass(frozen=True, eq=False)
class Registered:
    """A relation on the connection: its name, column types and where it came from."""

    relation: str
    what: str
    types: dict[str, str]
    lineage: dict[str, Any]

    def require(self, columns: Iterable[str], role: str) -> None:
        missing = [c for c in columns if c not in self.types]
        if missing:
            raise InvalidInputError(
                f"{self.what} has no {role} column {', '.join(map(repr, missing))}; "
                f"its columns are {', '.join(self.types)}"
            )

    def time_zone_aware(self, column: str) -> bool:
        """Whether ``column`` holds aware times, refusing anything that is not a timestamp."""
        kind = self.types[column]
        if kind not in TIMESTAMP_TYPES:
            raise InvalidInputError(
                f"column {column!r} of {self.what} must be a timestamp, not {kind}"
                + (" (parse it first, e.g. pd.to_datetime(..., utc=True))" if kind == "VARCHAR" else "")
            )
        return kind in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS")


def connect(memory_limit: str | None = None, temp_directory: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection in UTC that spills to ``temp_directory`` instead of running out of memory."""
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        conn.execute(f"SET memory_limit = '{memory_limit}'")
    if temp_directory is not None:
        conn.execute(f"SET temp_directory = {quote_literal(str(temp_directory))}")
    return conn


def register_rows(
    conn: duckdb.DuckDBPyConnection, rows: Source, name: str, what: str, workspace: Workspace | None
) -> Registered:
    """Make ``rows`` queryable as ``name`` and describe it."""
    lineage: dict[str, Any]
    if isinstance(rows, TableSource):
        if workspace is None:
            raise InvalidInputError(f"{what} reads {rows.describe()}, which needs a workspace")
        store = TableStore(workspace)
        commit = store.resolve(rows.table, rows.ref)
        checked_out = _checkout(store, workspace, rows.table, commit.id)
        check_names(what, checked_out.column_names)
        conn.register(name, checked_out)
        lineage = {"table": rows.table, "ref": rows.ref, "commit": commit.id, "rows": commit.num_rows}
    elif isinstance(rows, pa.Table | pd.DataFrame):
        check_names(
            what, [str(c) for c in (rows.column_names if isinstance(rows, pa.Table) else rows.columns)]
        )
        conn.register(name, _nanoseconds_kept(rows))
        lineage = {"in_memory_rows": len(rows)}
    elif isinstance(rows, str | Path):
        path = Path(rows)
        if not path.exists() and not any(ch in str(rows) for ch in "*?["):
            raise NotFoundError(f"{what}: no file {path}")
        check_file_names(path, what)
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS SELECT * FROM {file_scan(path)}")
        lineage = {"path": str(path)} | _file_stamp(path)
    else:
        raise InvalidInputError(f"{what} must be a Parquet/CSV path, a TableSource or rows, not {type(rows)}")
    types = {column: kind for column, kind, *_ in conn.execute(f"DESCRIBE {quote(name)}").fetchall()}
    return Registered(name, what, types, lineage)


def check_file_names(path: Path, what: str) -> None:
    """Refuse a Parquet or CSV file whose column names clash (DuckDB would rename the second ``price`` to
    ``price_1``, so a view naming a column could get the other one's values)."""
    if not path.is_file():
        return
    suffixes = "".join(path.suffixes).lower()
    try:
        if ".csv" in suffixes:
            with pacsv.open_csv(path) as reader:
                names = reader.schema.names
        elif ".tsv" not in suffixes:
            names = pq.read_schema(path).names
        else:
            return
    except (pa.ArrowException, OSError):
        return  # not readable this way: DuckDB's scan reports it
    check_names(what, names)


def _nanoseconds_kept(rows: pa.Table | pd.DataFrame) -> pa.Table | pd.DataFrame:
    """``rows``, as Arrow when a frame has nanosecond times: DuckDB scans those of a frame as
    microseconds, which would truncate them (Arrow's keep their unit)."""
    if isinstance(rows, pd.DataFrame) and any(
        isinstance(kind, pd.DatetimeTZDtype | np.dtype) and str(kind).startswith("datetime64[ns")
        for kind in rows.dtypes
    ):
        return pa.Table.from_pandas(rows, preserve_index=False)
    return rows


def derive_columns(conn: duckdb.DuckDBPyConnection, source: Registered, derive: dict[str, str]) -> Registered:
    """``source`` with the ``derive`` columns (name -> SQL expression over its columns) added."""
    if not derive:
        return source
    columns = ", ".join(f"({expression}) AS {quote(name)}" for name, expression in derive.items())
    name = f"{source.relation}_derived"
    try:
        conn.execute(
            f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS SELECT *, {columns} FROM {quote(source.relation)}"
        )
        types = {column: kind for column, kind, *_ in conn.execute(f"DESCRIBE {quote(name)}").fetchall()}
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"derived columns {derive} do not evaluate on {source.what}: {first}"
        ) from exc
    return Registered(name, source.what, types, source.lineage)


_CHECKOUTS: OrderedDict[tuple[str, str, str], pa.Table] = OrderedDict()
_CHECKOUTS_KEPT = 4
_CHECKOUTS_LOCK = threading.Lock()


def _checkout(store: TableStore, workspace: Workspace, table: str, commit_id: str) -> pa.Table:
    """A version's rows, kept for the next few joins: a commit never changes, and several views (and
    materializing them) often read the same one."""
    key = (str(workspace.root), table, commit_id)
    with _CHECKOUTS_LOCK:
        if key in _CHECKOUTS:
            _CHECKOUTS.move_to_end(key)
            return _CHECKOUTS[key]
    rows = store.checkout(table, commit_id)
    with _CHECKOUTS_LOCK:
        _CHECKOUTS[key] = rows
        while len(_CHECKOUTS) > _CHECKOUTS_KEPT:
            _CHECKOUTS.popitem(last=False)
    return rows


def file_scan(path: Path) -> str:
    """The DuckDB table function reading ``path`` (Parquet, or CSV by suffix)."""
    suffixes = "".join(path.suffixes).lower()
    if ".csv" in suffixes or ".tsv" in suffixes:
        return f"read_csv({quote_literal(str(path))}, auto_detect = true)"
    return f"read_parquet({quote_literal(str(path))})"


def check_same_time_kind(columns: list[tuple[Registered, str]]) -> None:
    """Refuse naive and aware timestamps together, naming one of each."""
    aware = [(source, column) for source, column in columns if source.time_zone_aware(column)]
    naive = [(source, column) for source, column in columns if not source.time_zone_aware(column)]
    if aware and naive:
        (naive_source, naive_column), (aware_source, aware_column) = naive[0], aware[0]
        raise InvalidInputError(
            f"column {naive_column!r} of {naive_source.what} has naive timestamps but column "
            f"{aware_column!r} of {aware_source.what} has time-zone-aware ones; make both UTC-aware "
            "(e.g. pd.to_datetime(..., utc=True)) rather than have mlprod guess"
        )


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_stamp(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
    except OSError:
        return {}
    return {"bytes": stat.st_size, "modified": stat.st_mtime}
