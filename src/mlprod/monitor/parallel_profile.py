"""Profile Parquet files column chunk by column chunk, with one or more threads, then merge.

``reference_from_parquet`` builds a reference, ``window_from_parquet`` a window of one. The work is cut
into units of one column chunk (a column of one row group); ``workers`` threads take units from a shared
queue, each feeds its own ``ReferenceBuilder`` (or window ``Profile``), and the results merge at the end:
the sketches are mergeable, so the profile is as if read in one pass. Threads suffice because the heavy
steps (Parquet decoding, Arrow casts and counts, NumPy sorts and sums) release the GIL.

Why column chunks and not row batches (measured with ``bench/monitor/profile_ingest.py`` on a 2-core VM
shared by other jobs, load average 12): reading a row group in record batches holds every column of
the row group at once (its compressed column chunks and each decoded batch: Arrow held ~195 MB per
thread for 250,000 rows x 50 columns). Memory a process touches for the first time is what a busy
machine makes expensive: on that VM, whose guest reports freed pages to the host, a first touch cost
2-3 ms of system time a MB under load, against ~0.1 ms for a page the process reuses. Profiling
1,000,000 rows x 50 columns took 1.3 CPU s of work and 1.6 more in the kernel for ~520 MB of fresh
memory with two threads, which is why the drift benchmark's CPU seconds doubled under load while a
peer's minutes of work barely moved. One column chunk at a time keeps Arrow's memory at ~10 MB a
thread (a row group longer than ``_WHOLE_CHUNK_ROWS`` streams in batches), the process grows by
~70-90 MB and spends ~0.2 CPU s in the kernel.

Why ``workers=None`` picks the count from the load: a thread beyond the idle cores does not make the
profile sooner (the threads share the CPU time the process gets, and one preempted while it holds
the GIL stalls the other) and costs up to ~10 % more CPU in switches; see ``default_workers``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import reduce
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from mlprod.errors import InvalidInputError
from mlprod.monitor.profile import ColumnKind, Profile, ProfileSpec, ReferenceBuilder, read_column
from mlprod.monitor.sketches import (
    DEFAULT_BINS,
    DEFAULT_K,
    DEFAULT_MAX_CATEGORIES,
    DEFAULT_MAX_KNOWN,
)

DEFAULT_BATCH_ROWS = 65_536  # numeric values sorted at once: 512 KB, the size of a core's L2 cache here
_WHOLE_CHUNK_ROWS = 1 << 20  # a column chunk up to this long is read whole (8 MB as float64), else streamed

Paths = str | Path | Sequence[str | Path]


_Target = TypeVar("_Target", ReferenceBuilder, Profile)


def default_workers() -> int:
    """Threads worth starting now: this process's cores that other work leaves idle, at least one.

    Idle cores are the usable cores minus the 1-minute load average, plus the one this process runs
    on (it counts in the load), rounded; ``make --max-load`` decides whether to start another job the
    same way. Without a load average (Windows) every usable core.

    Examples:
        >>> 1 <= default_workers() <= (os.cpu_count() or 1)
        True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    return max(1, min(cores, round(cores + 1 - load)))


def reference_from_parquet(
    paths: Paths,
    spec: ProfileSpec,
    *,
    workers: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    k: int = DEFAULT_K,
    max_known: int = DEFAULT_MAX_KNOWN,
) -> ReferenceBuilder:
    """A ``ReferenceBuilder`` fed every row of the Parquet files, read by ``workers`` threads.

    Only the spec's columns are read, one column chunk at a time; string columns come as dictionary
    arrays, counted by code. ``workers=None``: ``default_workers()``. Call ``finish()`` on the result
    for the profile, or ``merge`` more builders first.

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
    settings = {"bins": bins, "max_categories": max_categories, "k": k, "max_known": max_known}
    return _profile_files(
        paths, spec, lambda: ReferenceBuilder(spec, **settings), workers=workers, batch_rows=batch_rows
    )


def window_from_parquet(
    reference: Profile, paths: Paths, *, workers: int | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Profile:
    """A window of ``reference`` counting every row of the Parquet files, read like a reference.

    Examples:
        >>> import tempfile
        >>> spec = ProfileSpec(numeric=("x",), prediction=None, label=None)
        >>> reference = ReferenceBuilder(spec, bins=2).update(pa.table({"x": [1.0, 2.0, 3.0]})).finish()
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     pq.write_table(pa.table({"x": [0.5, 1.5, 2.5, 9.0]}), f"{folder}/now.parquet")
        ...     window = window_from_parquet(reference, f"{folder}/now.parquet")
        >>> window.rows, window.columns["x"].counts.tolist(), window.columns["x"].above
        (4, [2, 2], 1)
    """
    return _profile_files(paths, reference.spec, reference.window, workers=workers, batch_rows=batch_rows)


def _profile_files(
    paths: Paths, spec: ProfileSpec, make: Callable[[], _Target], *, workers: int | None, batch_rows: int
) -> _Target:
    """Feed every column chunk of the files to ``workers`` targets made by ``make``; merge them."""
    workers = default_workers() if workers is None else workers
    if workers < 1 or batch_rows < 1:
        raise InvalidInputError(f"workers and batch_rows must be at least 1, got {workers} and {batch_rows}")
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(path) for path in paths]
    kinds = spec.kinds()
    units: queue.SimpleQueue[tuple[Path, int, str]] = queue.SimpleQueue()
    rows = 0
    for path in files:
        parquet = _open(path, spec)  # checks columns and types before any thread starts
        rows += parquet.metadata.num_rows
        for group in range(parquet.num_row_groups):
            for name in kinds:
                units.put((path, group, name))
    failed = threading.Event()

    def work() -> _Target:
        target = make()
        opened: dict[Path, pq.ParquetFile] = {}  # one reader per thread and file
        try:
            while not failed.is_set():
                try:
                    path, group, name = units.get_nowait()
                except queue.Empty:
                    break
                if path not in opened:
                    opened[path] = _open(path, spec)
                accumulator = target.columns[name]
                for values in _column_chunk(opened[path], group, name, kinds[name], batch_rows):
                    accumulator.update(values)
        except BaseException:
            failed.set()  # the other threads stop at their next unit
            raise
        return target

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlprod-profile") as pool:
        results = [future.result() for future in [pool.submit(work) for _ in range(workers)]]
    merged: _Target = reduce(lambda left, right: left.merge(right), results)
    merged.rows = rows
    return merged


def _column_chunk(
    parquet: pq.ParquetFile, group: int, name: str, kind: ColumnKind, batch_rows: int
) -> Iterator[Any]:
    """The values of one column chunk, read whole when it is not too long, in pieces to count.

    Numeric pieces have ``batch_rows`` values (each is sorted once, best in cache); categorical
    pieces are as long as possible, since each count of a piece merges into the column's totals.
    """
    rows = parquet.metadata.row_group(group).num_rows
    piece = batch_rows if kind == "numeric" else _WHOLE_CHUNK_ROWS
    if rows <= _WHOLE_CHUNK_ROWS:
        chunk = parquet.read_row_group(group, columns=[name], use_threads=False)
        for start in range(0, rows, piece):
            yield read_column(chunk.slice(start, piece), name, kind)
    else:
        for batch in parquet.iter_batches(
            batch_size=piece, row_groups=[group], columns=[name], use_threads=False
        ):
            yield read_column(batch, name, kind)


def _open(path: Path, spec: ProfileSpec) -> pq.ParquetFile:
    """A Parquet file checked to hold the spec's columns with fitting types, string columns as dictionaries.

    ``pre_buffer=False``: with pyarrow's default, reading keeps every row group it has read
    buffered, so memory would grow with the file.
    """
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(f"file {str(path)!r} is not a readable Parquet file: {exc}") from exc
    kinds = spec.kinds()
    missing = [name for name in kinds if name not in schema.names]
    if missing:
        raise InvalidInputError(
            f"Parquet file {str(path)!r} has no column {missing[0]!r} (in the profile spec); "
            f"columns present: {schema.names}"
        )
    strings = [
        name
        for name, kind in kinds.items()
        if kind == "categorical"
        and (pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type))
    ]
    parquet = pq.ParquetFile(path, pre_buffer=False, read_dictionary=strings)
    empty = parquet.schema_arrow.empty_table()
    for name, kind in kinds.items():
        read_column(empty, name, kind)  # the type check of a batch, on the file's schema
    return parquet
