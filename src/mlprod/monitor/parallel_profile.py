"""Build a reference profile from Parquet files with several threads, one builder each, then merge.

Opt-in: ``ReferenceBuilder`` alone uses one core. Here ``workers`` threads take the files' row groups
from a shared queue, each streams its row groups in batches into its own ``ReferenceBuilder``, and the
builders merge at the end (the sketches are mergeable, so the profile is as if read in one pass).
Threads suffice because the heavy steps — Parquet decoding, Arrow casts and counts, NumPy sorts and
sums — release the GIL. Memory stays bounded: each thread holds one batch at a time.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import reduce
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mlprod.errors import InvalidInputError
from mlprod.monitor.profile import ProfileSpec, ReferenceBuilder
from mlprod.monitor.sketches import (
    DEFAULT_BINS,
    DEFAULT_K,
    DEFAULT_MAX_CATEGORIES,
    DEFAULT_MAX_KNOWN,
)

DEFAULT_BATCH_ROWS = 65_536  # rows per batch read: larger batches only touch more fresh memory, which is slow


def reference_from_parquet(
    paths: str | Path | Sequence[str | Path],
    spec: ProfileSpec,
    *,
    workers: int = 2,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    k: int = DEFAULT_K,
    max_known: int = DEFAULT_MAX_KNOWN,
) -> ReferenceBuilder:
    """A ``ReferenceBuilder`` fed every row of the Parquet files, read by ``workers`` threads.

    Only the spec's columns are read; string columns come as dictionary arrays, counted by code.
    Call ``finish()`` on the result for the profile, or ``merge`` more builders first.

    Examples:
        >>> import tempfile
        >>> spec = ProfileSpec(numeric=("x",), categorical=("c",), prediction=None, label=None)
        >>> table = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", None]})
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     pq.write_table(table, f"{folder}/ref.parquet", row_group_size=2)
        ...     profile = reference_from_parquet(f"{folder}/ref.parquet", spec, bins=2).finish()
        >>> profile.rows, profile.columns["x"].counts.tolist(), profile.columns["c"].missing
        (4, [2, 2], 1)
    """
    if workers < 1 or batch_rows < 1:
        raise InvalidInputError(f"workers and batch_rows must be at least 1, got {workers} and {batch_rows}")
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(path) for path in paths]
    units: queue.SimpleQueue[tuple[Path, int]] = queue.SimpleQueue()
    for path in files:
        for group in range(_open(path, spec).num_row_groups):
            units.put((path, group))
    settings = {"bins": bins, "max_categories": max_categories, "k": k, "max_known": max_known}

    def work() -> ReferenceBuilder:
        builder = ReferenceBuilder(spec, **settings)
        opened: dict[Path, pq.ParquetFile] = {}
        while True:
            try:
                path, group = units.get_nowait()
            except queue.Empty:
                return builder
            if path not in opened:
                opened[path] = _open(path, spec)
            batches = opened[path].iter_batches(
                batch_size=batch_rows, row_groups=[group], columns=list(spec.kinds()), use_threads=False
            )
            for batch in batches:
                builder.update(batch)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlprod-profile") as pool:
        builders = [future.result() for future in [pool.submit(work) for _ in range(workers)]]
    return reduce(ReferenceBuilder.merge, builders)


def _open(path: Path, spec: ProfileSpec) -> pq.ParquetFile:
    """A Parquet file checked to hold the spec's columns, its string columns read as dictionaries.

    ``pre_buffer=False``: with pyarrow's default, reading keeps every row group it has read
    buffered, so memory would grow with the file.
    """
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(
            f"reference file {str(path)!r} is not a readable Parquet file: {exc}"
        ) from exc
    missing = [name for name in spec.kinds() if name not in schema.names]
    if missing:
        raise InvalidInputError(
            f"reference file {str(path)!r} has no column {missing[0]!r} (in the profile spec); "
            f"columns present: {schema.names}"
        )
    strings = [
        name
        for name in spec.kinds()
        if pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type)
    ]
    return pq.ParquetFile(path, pre_buffer=False, read_dictionary=strings)
