"""Labels for monitoring, read from a file (Parquet or CSV) or from a versioned table of the workspace.

Labels arrive late and keep arriving, so a versioned table (``flight-labels``, keyed by request id)
is their natural home: each batch is one commit, and a report names the version it joined
(``flight-labels@main``, a tag, a commit). A file works too, for labels kept elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from mlprod.data import TableStore
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.workspace import Workspace

FILE_SUFFIXES = (".parquet", ".pq", ".csv")


def read_labels(workspace: Workspace, source: str) -> pa.Table:
    """The labels in ``source``: a file path, or a versioned table ``NAME`` or ``NAME@REF``.

    An existing file wins over a table of the same name; a name with a file suffix that is no file
    is reported as a missing file.
    """
    path = Path(source)
    if path.exists() or path.suffix.lower() in FILE_SUFFIXES:
        return _read_file(path)
    tables = TableStore(workspace)
    name, _, ref = source.partition("@")
    known = sorted(t.name for t in tables.tables())
    if name not in known:
        raise NotFoundError(
            f"labels {source!r} is neither a file nor a versioned table "
            f"(tables: {', '.join(known) or 'none yet'})"
        )
    return tables.checkout(name, ref) if ref else tables.checkout(name)


def _read_file(path: Path) -> pa.Table:
    if not path.is_file():
        raise InvalidInputError(f"labels {path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pv.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    raise InvalidInputError(f"labels {path}: expected a .parquet or .csv file, or a versioned table name")
