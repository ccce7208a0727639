"""A feature view's point-in-time join in memory: two streaming passes over the source, no join.

1. The entity rows' keys and times come out of DuckDB; their distinct keys get codes 0..n-1.
2. The source's keys and times stream from DuckDB in blocks. Two threads each take the next block,
   code its keys (a key no entity row has gets a code no entity row has) and let ``LatestRows`` find
   its candidates; this thread merges them in block order.
3. The source streams again and only the chosen rows' feature values are kept, written straight into
   the entity rows' places. A Parquet file is read with pyarrow on two threads, as the types DuckDB
   gives, a row group's column at a time: Arrow's allocator then reuses a few megabytes instead of
   taking fresh memory for whole row groups, which the kernel hands out as huge pages, zeroed and
   sometimes compacted first.

The join runs on ordinary memory pages (``small_pages``). The result has a row per entity row.
``fits`` decides when this is used: the entity rows' arrays and the blocks in flight must take at
most half the memory budget. Otherwise, or for keys whose types this cannot code exactly as DuckDB
compares them, the view takes DuckDB's ASOF JOIN, which spills to disk.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlprod.features.definitions import FeatureView
from mlprod.features.key_codes import KeyCoder, numpy_of
from mlprod.features.latest_rows import BLOCK_ROWS, NO_ROW, Candidates, LatestRows, TooWideError, row_numbers
from mlprod.features.scratch import Scratch, array_of
from mlprod.features.small_pages import small_pages
from mlprod.features.sources import Registered, quote
from mlprod.features.time_unit import TimeUnit
from mlprod.features.word_sort import sort_words
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    duckdb = lazy_module("duckdb")
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")

_THREADS = 2
_BATCH_ROWS = 1 << 17  # DuckDB grows each Arrow batch by reallocation: smaller ones stay in its arenas
_BYTES_PER_ENTITY_ROW = 160  # keys, times, order, best row and times, codes, chosen values' row numbers
_BYTES_PER_BLOCK_ROW = 120  # keys, times, created, sort words, orders, ranks
_BYTES_PER_VALUE = 16  # a kept feature value: taken from its row group, then in its place
_INTEGER = re.compile(r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT)$")
_CODABLE = re.compile(r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT)|FLOAT|DOUBLE|VARCHAR|DATE|BOOLEAN)$")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip


@dataclass(frozen=True)
class JoinInput:
    """One feature view's join: the entity rows (numbered by column ``row``, timed by ``event``), the
    view with the outputs asked for, its source, the names of the chosen-time output columns, and the
    unit times are compared in."""

    entities: Registered
    row: str
    event: str
    view: FeatureView
    names: Sequence[str]
    source: Registered
    time_column: str
    created_column: str
    unit: TimeUnit


def fits(
    conn: duckdb.DuckDBPyConnection,
    entities: Registered,
    features: int,
    memory_limit: str | None,
    held: int = 0,
) -> bool:
    """Whether the join's arrays and the ``features`` values it keeps per entity row, with the ``held``
    bytes of views already joined, stay within half the memory budget (the limit given, else half of
    the memory this process may use: the machine's, or its cgroup's when lower)."""
    ((rows,),) = conn.execute(f"SELECT count(*) FROM {quote(entities.relation)}").fetchall()
    per_row = _BYTES_PER_ENTITY_ROW + features * _BYTES_PER_VALUE
    needed = held + int(rows) * per_row + (_THREADS + 1) * BLOCK_ROWS * _BYTES_PER_BLOCK_ROW
    return needed <= _budget(memory_limit) // 2


def codable(join: JoinInput) -> bool:
    """Whether the key types can be coded exactly as DuckDB compares them (numbers of different
    types compare as DOUBLE)."""
    for key, column in join.view.key_columns.items():
        kinds = (join.entities.types[key], join.source.types[column])
        if not all(_CODABLE.match(kind) for kind in kinds):
            return False
        if kinds[0] != kinds[1] and not all(_INTEGER.match(k) or k in ("FLOAT", "DOUBLE") for k in kinds):
            return False
    return True


def join_in_memory(conn: duckdb.DuckDBPyConnection, join: JoinInput, *, keep_times: bool) -> pa.Table | None:
    """Row ``i`` holds the values chosen for entity row number ``i`` (null where none): the features,
    then with ``keep_times`` the chosen feature and created times. None when the keys or times cannot
    be coded or packed (too many key combinations, infinite timestamps): the caller then uses the ASOF
    join."""
    with small_pages():
        return _joined(conn, join, keep_times)


def _joined(conn: duckdb.DuckDBPyConnection, join: JoinInput, keep_times: bool) -> pa.Table | None:
    view = join.view
    ttl = view.ttl_delta
    entity, entity_rows = _entity_keys(conn, join)

    def prepare() -> tuple[KeyCoder, LatestRows]:
        """The key coder and the search, made on this thread while the workers read the first blocks."""
        coder, entity_codes = KeyCoder.of(entity.keys)
        entity_codes[~entity.valid] = NO_ROW
        search = LatestRows(
            entity_codes,
            entity.times,
            ttl=None if ttl is None else join.unit.ticks(ttl),
            created_filter=view.created is not None and view.created_time_filter,
        )
        return coder, search

    try:
        search = _search_blocks(conn, join, prepare)
    except TooWideError:
        return None
    chosen = search.result(with_times=keep_times)
    found = np.flatnonzero(chosen.rows != NO_ROW)
    found = found[_argsort(chosen.rows[found])]
    values = gather_rows(conn, join, chosen.rows[found], entity_rows[found], len(entity_rows))
    if keep_times:
        for name, ticks in ((join.time_column, chosen.times), (join.created_column, chosen.created)):
            values = values.append_column(name, _placed_times(ticks, chosen.rows, entity_rows, join.unit))
    return values


@dataclass(frozen=True)
class _Keys:
    """Key columns, integer times (0 where null) and whether keys and time are all present."""

    keys: list[pa.Array | pa.ChunkedArray]
    times: np.ndarray
    created: np.ndarray | None
    valid: np.ndarray


def _entity_keys(conn: duckdb.DuckDBPyConnection, join: JoinInput) -> tuple[_Keys, np.ndarray]:
    """The entity rows' keys and their row numbers."""
    keys = list(join.view.key_columns)
    sql = _key_query(join, join.entities, keys, join.event, None, extra=[quote(join.row)])
    table = conn.sql(sql).to_arrow_table().combine_chunks()
    return _keys_of(table, len(keys), created=False), numpy_of(table.column(len(keys) + 2))


def _key_query(
    join: JoinInput, rows: Registered, columns: list[str], time: str, created: str | None, extra: list[str]
) -> str:
    """Keys (compared by value: integers of different types as BIGINT, numbers with a float as DOUBLE
    with -0.0 made 0.0), integer times (null where infinite or null), validity, ``extra``."""
    selected = []
    for (key, column), name in zip(join.view.key_columns.items(), columns, strict=True):
        kinds = {join.entities.types[key], join.source.types[column]}
        if kinds & {"FLOAT", "DOUBLE"}:
            selected.append(f"(CAST({quote(name)} AS DOUBLE) + 0.0)")
        elif len(kinds) > 1:  # integers of different widths; a value past BIGINT matches no entity
            selected.append(f"TRY_CAST({quote(name)} AS BIGINT)")
        else:
            selected.append(quote(name))
    unit, types = join.unit, rows.types
    ticks = unit.ticks_of(quote(time), types[time])
    selected.append(ticks)
    if created is not None:
        created_ticks = unit.ticks_of(quote(created), types[created])
        selected.append(f"CASE WHEN {quote(created)} IS NULL THEN {ticks} ELSE {created_ticks} END")
    selected.append("(" + " AND ".join(f"{quote(name)} IS NOT NULL" for name in [*columns, time]) + ")")
    listed = ", ".join(f"{expression} AS c{i}" for i, expression in enumerate([*selected, *extra]))
    return f"SELECT {listed} FROM {quote(rows.relation)}"


def _keys_of(
    batch: pa.RecordBatch | pa.Table,
    n_keys: int,
    *,
    created: bool,
    scratch: Scratch | None = None,
) -> _Keys:
    columns = batch.columns
    valid = np.asarray(numpy_of(columns[n_keys + 1 + created]), dtype=bool)
    times = _ticks(columns[n_keys], valid, array_of(scratch, "times", len(valid), np.int64))
    created_times = (
        _ticks(columns[n_keys + 1], valid, array_of(scratch, "created", len(valid), np.int64))
        if created
        else None
    )
    return _Keys(list(columns[:n_keys]), times, created_times, valid)


def _ticks(
    column: pa.Array | pa.ChunkedArray, valid: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Epoch times in the join's unit (0 where the row is not valid; in ``out`` when they can be copied
    there); a null in a valid row is an infinite timestamp, which only the ASOF join orders."""
    if column.null_count:
        null = numpy_of(column.is_null())
        if np.any(null & valid):
            raise TooWideError("infinite timestamps")
        column = pc.fill_null(column, 0)
    return numpy_of(column, out)


def _search_blocks(
    conn: duckdb.DuckDBPyConnection, join: JoinInput, prepare: Callable[[], tuple[KeyCoder, LatestRows]]
) -> LatestRows:
    """The search (made with its key coder by ``prepare`` while DuckDB reads the first blocks) fed every
    source block's candidates in order. Two threads each take the next block from DuckDB and search it
    (so one reads while the other sorts); this thread merges the candidates in block order. At most
    ``_THREADS + 1`` blocks are out at once."""
    created = join.view.created is not None
    key_blocks = _key_blocks(conn, join)
    try:
        return _searched(join, prepare, enumerate(key_blocks), created)
    finally:
        key_blocks.close()  # the DuckDB result must not stay open when a worker failed


def _searched(
    join: JoinInput,
    prepare: Callable[[], tuple[KeyCoder, LatestRows]],
    blocks: Iterator[tuple[int, tuple[int, pa.Table]]],
    created: bool,
) -> LatestRows:
    reading, slots, stop = threading.Lock(), threading.Semaphore(_THREADS + 1), threading.Event()
    made: list[tuple[KeyCoder, LatestRows]] = []
    ready = threading.Event()
    done: queue.Queue[tuple[int, int, Candidates] | None] = queue.Queue()

    def work() -> None:
        scratch = Scratch()
        try:
            while slots.acquire() and not stop.is_set():
                with reading:
                    item = next(blocks, None)
                if item is None:
                    return
                number, (start, block) = item
                keys = _keys_of(block, len(join.view.key_columns), created=created, scratch=scratch)
                del block
                ready.wait()
                if stop.is_set():
                    return
                coder, search = made[0]
                codes = coder.codes(keys.keys, scratch)
                np.putmask(codes, codes < 0, coder.count)  # a key no entity row has: a code none has
                if not keys.valid.all():
                    codes[~keys.valid] = NO_ROW
                done.put((number, start, search.block(codes, keys.times, keys.created, scratch)))
        except BaseException:
            stop.set()
            raise
        finally:
            done.put(None)

    with ThreadPoolExecutor(_THREADS) as pool:
        workers = [pool.submit(work) for _ in range(_THREADS)]
        waiting: dict[int, tuple[int, Candidates]] = {}
        merged, running = 0, _THREADS
        try:
            made.append(prepare())
            search = made[0][1]
            ready.set()
            while running:
                item = done.get()
                if item is None:  # a worker ended: at the end of the blocks, or failing
                    running -= 1
                    for _ in range(_THREADS):
                        slots.release()  # a worker waiting for a slot sees whether to stop
                    continue
                waiting[item[0]] = item[1:]
                while merged in waiting:
                    search.add(*waiting.pop(merged))
                    merged += 1
                    slots.release()
        finally:
            stop.set()  # and no worker may wait for a slot or a search that will not come
            ready.set()
            for _ in range(_THREADS):
                slots.release()
        for worker in workers:
            worker.result()  # raises a worker's error
    return search


def _key_blocks(
    conn: duckdb.DuckDBPyConnection, join: JoinInput
) -> Generator[tuple[int, pa.Table], None, None]:
    """(first row number, block of at most ``BLOCK_ROWS``) of the source's keys and times, in order."""
    view = join.view
    assert view.timestamp is not None
    columns = list(view.key_columns.values())
    sql = _key_query(join, join.source, columns, view.timestamp, view.created, extra=[])
    start, rows = 0, 0
    batches: list[pa.RecordBatch] = []
    with conn.sql(sql).to_arrow_reader(min(_BATCH_ROWS, BLOCK_ROWS)) as reader:
        for batch in reader:
            if rows + batch.num_rows > BLOCK_ROWS:
                yield start, pa.Table.from_batches(batches)
                start, batches, rows = start + rows, [], 0
            batches.append(batch)
            rows += batch.num_rows
    if batches:
        yield start, pa.Table.from_batches(batches)


def gather_rows(
    conn: duckdb.DuckDBPyConnection, join: JoinInput, rows: np.ndarray, positions: np.ndarray, length: int
) -> pa.Table:
    """A ``length``-row table of the view outputs: row ``positions[i]`` holds the feature values of
    source row ``rows[i]`` (``rows`` ascending), the other rows are null."""
    columns = list(dict.fromkeys(join.view.feature_columns[name] for name in join.names))
    listed = ", ".join(quote(c) for c in columns)
    schema = conn.sql(f"SELECT {listed} FROM {quote(join.source.relation)} LIMIT 0").to_arrow_table().schema
    placed = Placed(schema, length)
    for lo, batch in _taken(conn, join, schema, rows, placed, positions):
        placed.put(positions[lo : lo + batch.num_rows], batch)
    values = placed.table()
    return values.select([join.view.feature_columns[name] for name in join.names]).rename_columns(
        list(join.names)
    )


def _taken(
    conn: duckdb.DuckDBPyConnection,
    join: JoinInput,
    schema: pa.Schema,
    rows: np.ndarray,
    placed: Placed,
    positions: np.ndarray,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The chosen rows of the source, as DuckDB types them: put in ``placed`` here (a Parquet file whose
    columns pyarrow reads as the same types: row groups with pyarrow, on threads), or yielded as (index
    of the batch's first row in ``rows``, batch)."""
    columns = schema.names
    path = _plain_parquet(join, schema)
    if path is not None:
        metadata = pq.read_metadata(path)
        sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

        def take(group: int) -> None:
            lo, hi = np.searchsorted(rows, starts[group : group + 2])
            if hi > lo:
                parquet = pq.ParquetFile(path)  # one reader per thread: a reader is not thread-safe
                index = rows[lo:hi] - starts[group]
                for at, name in enumerate(columns):  # one column at a time: see the module docstring
                    column = parquet.read_row_group(group, columns=[name], use_threads=False).column(0)
                    placed.put_taken(at, positions[lo:hi], column, index)

        with ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(take, range(len(sizes))))
        return
    listed = ", ".join(quote(c) for c in columns)
    start = 0
    for batch in conn.sql(f"SELECT {listed} FROM {quote(join.source.relation)}").to_arrow_reader(BLOCK_ROWS):
        lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
        if hi > lo:
            yield int(lo), batch.take(pa.array(rows[lo:hi] - start))
        start += batch.num_rows


class Placed:
    """Columns of ``length`` rows filled piece by piece at given row positions (null elsewhere), from
    several threads: fixed-width columns are numpy arrays written in place; others keep their pieces and
    are taken into place at the end."""

    def __init__(self, schema: pa.Schema, length: int) -> None:
        self._schema, self._length = schema, length
        self._values: dict[int, np.ndarray] = {}
        self._present: dict[int, np.ndarray] = {}
        self._pieces: dict[int, list[tuple[np.ndarray, pa.Array]]] = {}
        for at, kind in enumerate(schema.types):
            if _fixed_width(kind):
                dtype = pa.nulls(0, kind).to_numpy(zero_copy_only=False).dtype
                self._values[at] = np.zeros(length, dtype=dtype)
                self._present[at] = np.zeros(length, dtype=bool)
            else:
                self._pieces[at] = []
        self._lock = threading.Lock()

    def put(self, positions: np.ndarray, batch: pa.RecordBatch) -> None:
        for at in range(batch.num_columns):
            self.put_column(at, positions, batch.column(at))

    def put_column(self, at: int, positions: np.ndarray, array: pa.Array) -> None:
        """Row ``positions[i]`` of column number ``at`` takes ``array[i]``."""
        values = self._values.get(at)
        if values is None:
            with self._lock:
                self._pieces[at].append((positions, array))
        elif array.null_count:
            values[positions] = array.fill_null(_zero(array.type)).to_numpy(zero_copy_only=False)
            self._present[at][positions] = np.asarray(array.is_valid())
        else:
            values[positions] = array.to_numpy(zero_copy_only=False)
            self._present[at][positions] = True

    def put_taken(self, at: int, positions: np.ndarray, column: pa.ChunkedArray, index: np.ndarray) -> None:
        """Row ``positions[i]`` of column number ``at`` takes ``column[index[i]]``: a fixed-width
        column's values and validity are read in place, with numpy, from its buffers."""
        values = self._values.get(at)
        if values is None or column.num_chunks != 1:
            self.put_column(at, positions, column.take(pa.array(index)).combine_chunks())
            return
        array = column.chunk(0)
        validity, data = array.buffers()[:2]
        start, stop = array.offset, array.offset + len(array)
        taken = np.frombuffer(data, dtype=values.dtype, count=stop)[start:][index]
        if validity is None:
            self._present[at][positions] = True
        else:  # the validity bits of the taken values alone
            bit = index + start
            valid = (np.frombuffer(validity, dtype=np.uint8)[bit >> 3] >> (bit & 7).astype(np.uint8)) & 1
            valid = valid.view(bool)
            taken[~valid] = 0
            self._present[at][positions] = valid
        values[positions] = taken

    def table(self) -> pa.Table:
        columns = []
        for at, field in enumerate(self._schema):
            if at in self._values:
                columns.append(pa.array(self._values[at], type=field.type, mask=~self._present[at]))
                continue
            where = np.full(self._length, -1, dtype=np.int64)
            pieces = self._pieces[at]
            if pieces:
                positions = np.concatenate([positions for positions, _ in pieces])
                where[positions] = np.arange(len(positions))
            # arrays, not batches: a Parquet column may be required where DuckDB says nullable
            values = pa.concat_arrays([pa.array([], field.type), *(array for _, array in pieces)])
            columns.append(values.take(pa.array(where, mask=where < 0)))
        return pa.table(columns, schema=self._schema)


def _plain_parquet(join: JoinInput, schema: pa.Schema) -> Path | None:
    """The source's file when it is one Parquet file whose ``schema`` columns are stored (not derived)
    and read by pyarrow as the types DuckDB gives them (not so for INT96 times or UUIDs, say)."""
    source = join.view.source
    if not isinstance(source, str | Path):
        return None
    path = Path(source)
    if (
        path.suffix.lower() != ".parquet"
        or not path.is_file()
        or set(schema.names) & set(join.view.derived_columns)
    ):
        return None
    stored = pq.read_schema(path)
    same = all(
        name in stored.names and stored.field(name).type == schema.field(name).type for name in schema.names
    )
    return path if same else None


def _argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort`` of non-negative int64s, through a sort of packed (value, index) words when they
    fit (faster). The words' codes are the values shifted down to about as many bits as there are
    values, so that a group holds about one word."""
    index_bits = max(len(values) - 1, 1).bit_length()
    greatest = int(values.max(initial=0))
    if len(values) == 0 or greatest.bit_length() + index_bits > 63:
        return np.argsort(values, kind="stable")
    words = (values << index_bits).view(np.uint64)
    words |= row_numbers(len(values))
    shift = max(greatest.bit_length() - index_bits, 0)
    words = sort_words(words, values >> shift, (greatest >> shift) + 1)
    words &= np.uint64((1 << index_bits) - 1)
    return words.view(np.int64)


def _fixed_width(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_timestamp(kind))


def _zero(kind: pa.DataType) -> pa.Scalar:
    return pa.scalar(0, type=pa.int64()).cast(kind)


def _placed_times(ticks: np.ndarray, rows: np.ndarray, positions: np.ndarray, unit: TimeUnit) -> pa.Array:
    """Per entity row (``ticks[i]`` goes to row ``positions[i]``): the chosen time, null where no row
    was chosen."""
    placed = np.zeros(len(positions), dtype=np.int64)
    placed[positions] = ticks
    missing = np.ones(len(positions), dtype=bool)
    missing[positions] = rows == NO_ROW
    return pa.array(placed, type=pa.int64(), mask=missing).cast(unit.arrow())


def _budget(memory_limit: str | None) -> int:
    if memory_limit:
        match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?I?B?)\s*", memory_limit.upper())
        if match and match.group(2) in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2)])
    machine = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        machine = min(machine, int(limit)) if limit.isdigit() else machine
    except OSError:
        pass
    return machine // 2
