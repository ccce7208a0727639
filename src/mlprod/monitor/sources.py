"""Data given to monitoring from outside a workspace: files (Parquet, CSV, JSON lines), Arrow, pandas.

``open_source`` turns what a user passes (a path, a glob, several of them, a directory of Parquet
files, a ``pyarrow.Table`` or a ``pandas.DataFrame``) into one ``pyarrow.dataset.Dataset``: its
schema is known before any row is read, ``count_rows`` is cheap on Parquet, and ``batches`` streams
the columns asked for in file order, so a reference or analysis larger than memory is read in
bounded memory. JSON lines files are read whole (pyarrow has no streaming dataset reader for them).

Examples:
    >>> import pyarrow as pa
    >>> source = open_source(pa.table({"x": [1, 2, 3]}), "analysis")
    >>> source.count_rows(), [b.num_rows for b in batches(source, ["x"], "analysis")]
    (3, [3])
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.json as pj

from mlprod.errors import MonitorDataError

PathLike: TypeAlias = str | os.PathLike[str]
Source: TypeAlias = PathLike | Sequence[PathLike] | pa.Table | pd.DataFrame
BATCH_ROWS = 100_000
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json"}


def open_source(source: Source, what: str) -> ds.Dataset:
    """``source`` as a dataset; ``what`` ("reference", "analysis", …) names it in error messages."""
    if isinstance(source, pa.Table):
        return ds.dataset(source)
    if isinstance(source, pd.DataFrame):
        try:
            return ds.dataset(pa.Table.from_pandas(source, preserve_index=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise MonitorDataError(f"{what}: the DataFrame does not convert to Arrow: {exc}") from exc
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    if not paths:
        raise MonitorDataError(f"{what}: no file given")
    files = [f for p in paths for f in _expand(Path(p), what)]
    kinds = {_format(f, what) for f in files}
    if len(kinds) > 1:
        raise MonitorDataError(
            f"{what}: files of different formats ({', '.join(sorted(kinds))}); give one format"
        )
    (kind,) = kinds
    try:
        if kind == "json":
            tables = [pj.read_json(f) for f in files]
            return ds.dataset(pa.concat_tables(tables, promote_options="permissive"))
        return ds.dataset([str(f) for f in files], format=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise MonitorDataError(f"{what}: cannot read {', '.join(map(str, files[:3]))}: {exc}") from exc


def batches(dataset: ds.Dataset, columns: Sequence[str], what: str) -> Iterator[pa.Table]:
    """The ``columns`` of ``dataset`` in batches of at most ``BATCH_ROWS`` rows, in file order."""
    try:
        for batch in dataset.to_batches(columns=list(columns), batch_size=BATCH_ROWS):
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # e.g. a CSV column typed from its first block
        raise MonitorDataError(
            f"{what}: {exc}; a CSV column's type is guessed from its first rows, Parquet keeps types"
        ) from exc


def _expand(path: Path, what: str) -> list[Path]:
    """A file, every Parquet/CSV/JSON-lines file of a directory, or the files a glob matches."""
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _FORMATS)
        if not found:
            raise MonitorDataError(f"{what}: directory {path} holds no .parquet, .csv or .jsonl file")
        return found
    if glob.has_magic(str(path)):
        matched = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matched:
            raise MonitorDataError(f"{what}: no file matches {str(path)!r}")
        return matched
    raise MonitorDataError(f"{what}: {path} is not a file, a directory or a glob that matches files")


def _format(path: Path, what: str) -> str:
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise MonitorDataError(
            f"{what}: {path} is not a .parquet, .csv or .jsonl file; convert it or rename it by its format"
        )
    return kind
