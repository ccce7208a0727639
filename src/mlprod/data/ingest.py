"""Turning what users hand us (pandas, Arrow, a Parquet or CSV path) into an Arrow table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


def to_arrow(data: Any) -> pa.Table:
    """An Arrow table from a pandas DataFrame, Arrow table/batch, or a ``.parquet``/``.csv`` path."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, str | os.PathLike):
        return read_table_file(Path(data))
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise InvalidInputError(f"cannot convert the DataFrame to Arrow: {exc}") from exc
    raise InvalidInputError(
        f"cannot commit a {type(data).__name__}: give a pandas DataFrame, an Arrow table or a "
        ".parquet/.csv path"
    )


def read_table_file(path: Path) -> pa.Table:
    """Read a Parquet or CSV file into Arrow, with an error naming the file when it cannot."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist or is not a file")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes[-1:] in ([".parquet"], [".pq"]):
            return pq.read_table(path)
        if ".csv" in suffixes:
            return pacsv.read_csv(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    raise InvalidInputError(f"{path}: expected a .parquet, .csv or .csv.gz file")
