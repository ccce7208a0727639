"""The prediction log: every prediction served, on disk before its answer is sent, then in Parquet.

``append`` (one call per answered request, before the answer goes out) encodes the request's rows
and, with ``write_ahead`` on (the default), hands them to the operating system by copying them into
the current write-ahead segment, a file mapped into memory (``mlprod.serve.write_ahead``; no system
call per request): from then on a crash of the process (``kill -9``, out-of-memory kill) cannot lose
them. A background thread turns the rows into Parquet files ``date=YYYY-MM-DD/part-<segment
id>.parquet``:

- on a fixed timer, every ``flush_interval`` seconds;
- sooner when ``max_buffered_rows`` rows are waiting;
- on ``close()`` (the server's graceful shutdown), after the thread has stopped.

Each flush seals the current segment (the next append opens a new one) and writes its rows, which
are also kept in memory, as one file per UTC day, under a temporary dot-name, fsynced, renamed, its
directory fsynced; only then is the segment deleted. A process that died leaves its segments
behind; the next writer on the directory (``start()``) converts them the same way. The Parquet
names are the segment's id, so a conversion repeated after a crash between the rename and the
delete skips the days already written: nothing is written twice. Readers
(``read_prediction_log``, the monitors) read the not yet converted segments too.

``fsync`` says what a power loss (or kernel crash) may lose: ``"never"`` (default) leaves the
segment to the operating system's write-back, so the rows of the last ``flush_interval`` plus the
kernel's write-back delay may be lost (older rows are in fsynced Parquet); ``"always"`` makes
``synced()`` wait for an ``fsync`` of the segment before the answer is sent, shared by every
request appended meanwhile (group commit), so a power loss loses no answered request.

With ``write_ahead=False`` the rows are only kept in memory until the flush: a crash loses those
of the last interval. When Parquet writes fail (disk full, directory gone) the rows wait and the
write is retried every ``flush_interval``; memory is bounded by ``max_pending_rows`` (default twice
``max_buffered_rows``): past it, rows that are in a segment are released from memory (re-read from
the segment later), and rows that are only in memory (``write_ahead=False``) are dropped, oldest
first, counted in ``dropped_rows`` and logged. With ``write_ahead`` on, a failing segment write
makes ``append`` raise ``PredictionLogError`` (the server answers 503): no answer without its record.

The inputs are stored as strict JSON text: NaN and infinities become ``null`` (Python's ``NaN``
token is not JSON; strict parsers such as JavaScript's ``JSON.parse`` refuse it) and values JSON
cannot hold are written with ``str``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mlprod.artifacts import fsync_dir
from mlprod.errors import InvalidInputError, PredictionLogError
from mlprod.serve import write_ahead
from mlprod.serve.write_ahead import WAL_DIR, Record, Segment

log = logging.getLogger(__name__)
SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("route", pa.string()),
        ("inputs", pa.string()),
        ("prediction", pa.float64()),
        ("latency_ms", pa.float64()),
    ]
)
FSYNC_MODES = ("never", "always")
_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class _Batch:
    """The rows of one sealed segment (or one swap of the memory buffer), written as one file per day."""

    id: str
    segment: Segment | None
    records: list[Record] | None  # None: released from memory, re-read from the segment
    remaining: int  # rows not yet in a Parquet file
    written_days: set[str]


class PredictionLogWriter:
    """Records each answered request (on disk at once with ``write_ahead``) and writes Parquet files.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     writer = PredictionLogWriter(directory, flush_interval=1.0)
        ...     seq = writer.append(request_id="r1", model="toy", version=1, route="champion",
        ...                         inputs=[{"x": 1.0}], predictions=[0.25], latency_ms=2.0)
        ...     writer.close()
        ...     read_prediction_log(directory).column("request_id").to_pylist()
        ['r1']
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        max_buffered_rows: int = 50_000,
        max_pending_rows: int | None = None,
        write_ahead: bool = True,
        fsync: Literal["never", "always"] = "never",
        start: bool = True,
    ) -> None:
        """``start=False`` defers the background thread to ``start()`` (an app starts it when it runs)."""
        if not flush_interval > 0:
            raise InvalidInputError(f"flush_interval must be > 0 seconds, got {flush_interval!r}")
        if max_buffered_rows < 1:
            raise InvalidInputError(f"max_buffered_rows must be >= 1, got {max_buffered_rows!r}")
        pending = 2 * max_buffered_rows if max_pending_rows is None else max_pending_rows
        if pending < max_buffered_rows:
            raise InvalidInputError(
                f"max_pending_rows ({pending}) must be >= max_buffered_rows ({max_buffered_rows})"
            )
        if fsync not in FSYNC_MODES:
            raise InvalidInputError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
        if fsync == "always" and not write_ahead:
            raise InvalidInputError('fsync = "always" needs write_ahead on: there is no segment to sync')
        self.directory = Path(directory)
        self.flush_interval = float(flush_interval)
        self.max_buffered_rows = max_buffered_rows
        self.max_pending_rows = pending
        self.write_ahead = write_ahead
        self.fsync = fsync
        self._buffer: list[Record] = []
        self._segment: Segment | None = None
        self._pending: deque[_Batch] = deque()
        self._dropped = 0
        self._rows_written = 0
        self._closed = False
        self._written_seq = self._synced_seq = 0
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()
        self._sync_wanted = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # one conversion at a time
        self._segments_lock = threading.Lock()  # an fsync never meets a segment being closed
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._syncer = threading.Thread(target=self._sync_loop, name="prediction-log-fsync", daemon=True)
        if start:
            self.start()

    @property
    def dropped_rows(self) -> int:
        """Rows lost: only in memory (``write_ahead=False``) while writes failed long, or appended after
        ``close()``."""
        return self._dropped

    @property
    def rows_written(self) -> int:
        """Rows this writer has put into Parquet files (its own appends; recovered segments not counted)."""
        return self._rows_written

    @property
    def buffered_rows(self) -> int:
        """Rows appended but not yet in a Parquet file."""
        with self._lock:
            return len(self._buffer) + sum(batch.remaining for batch in self._pending)

    def start(self) -> None:
        """Convert segments left by a dead writer, then start the background writer (once; not after
        ``close()``)."""
        if not self._thread.is_alive() and not self._closed and self._thread.ident is None:
            self._thread.start()
            if self.fsync == "always":
                self._syncer.start()

    def append(
        self,
        *,
        request_id: str,
        model: str,
        version: int,
        route: str,
        inputs: Sequence[Mapping[str, Any]],
        predictions: Sequence[float],
        latency_ms: float,
        at: datetime | None = None,
    ) -> int:
        """Record one request's predictions (one log row per prediction); returns its sequence number.

        With ``write_ahead`` the rows are handed to the operating system before this returns (raises
        ``PredictionLogError`` when they cannot be); with ``fsync = "always"``, ``await synced(n)``
        waits until they are on stable storage. ``at`` is the prediction's time (default now):
        replays and backfills of past traffic give it.
        """
        if len(inputs) != len(predictions):
            raise InvalidInputError(
                f"prediction log: request {request_id!r} has {len(inputs)} input row(s) "
                f"but {len(predictions)} prediction(s); pass one prediction per input row"
            )
        if not inputs:
            return self._written_seq
        now = time.time_ns() // 1000 if at is None else _utc_microseconds(at)
        version = int(version)
        latency_ms = float(latency_ms)
        if len(inputs) == 1:  # the common request: skip the loop machinery
            text, prediction = _json(inputs[0]), float(predictions[0])
            records = [(request_id, 0, now, model, version, route, text, prediction, latency_ms)]
        else:
            records = [
                (request_id, i, now, model, version, route, _json(row), float(p), latency_ms)
                for i, (row, p) in enumerate(zip(inputs, predictions, strict=True))
            ]
        frame = write_ahead.encode(records) if self.write_ahead else b""
        with self._lock:
            if self._closed:
                self._dropped += len(records)
                log.warning("prediction log: %d row(s) of request %s arrived after close; dropped",
                            len(records), request_id)  # fmt: skip
                return self._written_seq
            if self.write_ahead:
                self._write_ahead(frame, request_id)
            self._buffer.extend(records)
            self._written_seq += 1
            seq, pending = self._written_seq, len(self._buffer)
            if self.fsync == "always":
                self._sync_wanted.notify()
            if pending + self._rows_in_memory() > self.max_pending_rows:
                self._bound_memory()
        if pending >= self.max_buffered_rows:
            self._wake.set()
        return seq

    async def synced(self, seq: int) -> None:
        """Wait until request ``seq`` (``append``'s result) is fsynced (only with ``fsync = "always"``)."""
        if self.fsync != "always":
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if seq <= self._synced_seq:
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((seq, loop, future))
            self._sync_wanted.notify()
        await future

    def flush(self) -> int:
        """Seal what is buffered and write it to Parquet now; return the number of rows written.

        When a write fails the rows wait for the next flush (a day already written is not rewritten)
        and the error is raised.
        """
        with self._write_lock:
            with self._lock:
                if self._buffer:
                    segment = self._segment
                    batch_id = segment.id if segment is not None else write_ahead.new_segment_id()
                    records, self._buffer, self._segment = self._buffer, [], None
                    self._pending.append(_Batch(batch_id, segment, records, len(records), set()))
                batches = list(self._pending)
            written = 0
            for batch in batches:
                written += self._convert(batch)
                with self._lock:
                    self._pending.popleft()
                with self._segments_lock:
                    if batch.segment is not None:
                        batch.segment.remove()
            return written

    def recover(self) -> int:
        """Convert the segments a dead writer left under the directory; return the rows recovered."""
        with self._write_lock:
            return recover_segments(self.directory)

    def close(self) -> None:
        """Stop the background threads, then write what is buffered (the graceful-shutdown flush).

        Raises the write's ``OSError`` when that last write fails, after logging how many rows
        wait (in a segment, converted by the next writer; only in memory, lost).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sync_wanted.notify_all()
        self._wake.set()
        for thread in (self._thread, self._syncer):
            if thread.is_alive():
                thread.join()
        try:
            self.flush()
        except OSError as exc:
            where = "kept in segments for the next writer" if self.write_ahead else "lost"
            log.error("prediction log: final write to %s failed (%s); %d row(s) %s",
                      self.directory, exc, self.buffered_rows, where)  # fmt: skip
            raise
        finally:
            if self.write_ahead:
                with self._segments_lock:
                    for batch in self._pending:
                        if batch.segment is not None:
                            batch.segment.close()

    # -- request path -----------------------------------------------------------------------------

    def _write_ahead(self, frame: bytes, request_id: str) -> None:
        try:
            if self._segment is None:
                self._segment = Segment(self.directory / WAL_DIR)
            self._segment.append(frame)
        except OSError as exc:
            if self._segment is not None and self._buffer:  # a partial write ends the segment: seal it
                self._pending.append(_Batch(self._segment.id, self._segment, self._buffer,
                                            len(self._buffer), set()))  # fmt: skip
                self._buffer = []
            elif self._segment is not None:
                with self._segments_lock:  # never closed under an fsync in progress
                    self._segment.remove()
            self._segment = None
            raise PredictionLogError(
                f"prediction log: cannot write request {request_id!r} to {self.directory / WAL_DIR} "
                f"({exc}); the answer is not sent. Free disk space or fix the directory "
                "(config: prediction_log.path)"
            ) from exc

    def _rows_in_memory(self) -> int:
        return sum(len(b.records) for b in self._pending if b.records is not None)

    def _bound_memory(self) -> None:
        """Release (segment on disk) or drop (memory only) the oldest rows past ``max_pending_rows``."""
        excess = len(self._buffer) + self._rows_in_memory() - self.max_pending_rows
        for batch in self._pending:
            if excess <= 0:
                return
            if batch.records is None:
                continue
            if batch.segment is not None:
                excess -= len(batch.records)
                batch.records = None
                continue
            cut = min(excess, len(batch.records))
            batch.records = batch.records[cut:]
            batch.remaining -= cut
            self._dropped += cut
            excess -= cut
        if excess > 0 and not self.write_ahead:
            del self._buffer[:excess]
            self._dropped += excess

    # -- background -------------------------------------------------------------------------------

    def _convert(self, batch: _Batch) -> int:
        records = batch.records
        if records is None:
            assert batch.segment is not None
            decoded = write_ahead.read_segment(batch.segment.path)
            records = [] if decoded is None else decoded.records
        written = 0
        for day, rows in _by_day(records):
            if day in batch.written_days:
                continue
            table = self._table(rows)
            if table.num_rows:
                _write_parquet_atomically(table, self.directory / f"date={day}", batch.id)
            batch.written_days.add(day)
            with self._lock:
                batch.remaining -= len(rows)
                self._rows_written += table.num_rows
            written += table.num_rows
        return written

    def _table(self, rows: list[Record]) -> pa.Table:
        table, dropped = _tolerant_table(rows)
        if dropped:
            with self._lock:
                self._dropped += dropped
        return table

    def _sync_loop(self) -> None:
        """Group commit: one fsync covers every request appended before it started."""
        while True:
            with self._lock:
                while self._synced_seq >= self._written_seq and not self._closed:
                    self._sync_wanted.wait()
                if self._synced_seq >= self._written_seq and self._closed:
                    return
                target = self._written_seq
                segments = [b.segment for b in self._pending if b.segment is not None]
                if self._segment is not None:
                    segments.append(self._segment)
            error: OSError | None = None
            with self._segments_lock:
                try:
                    for segment in segments:
                        segment.sync()
                except OSError as exc:
                    error = exc
                    log.error("prediction log: fsync of %s failed: %s", self.directory / WAL_DIR, exc)
            with self._lock:
                if error is None:
                    self._synced_seq = target
                ready = [w for w in self._waiters if w[0] <= target]
                self._waiters = [w for w in self._waiters if w[0] > target]
            for _, loop, future in ready:
                loop.call_soon_threadsafe(_settle, future, error)

    def _run(self) -> None:
        if self.write_ahead:
            try:
                self.recover()
            except Exception as exc:  # the segments stay; the next writer (or a reader) has them
                log.error("prediction log: cannot recover segments under %s: %s", self.directory, exc)
        failing_since: float | None = None
        reported_drops = 0
        next_flush = time.monotonic() + self.flush_interval
        while True:
            remaining = next_flush - time.monotonic()
            if remaining > 0:
                self._wake.wait(remaining)
            self._wake.clear()
            if self._closed:
                return
            now = time.monotonic()
            if now < next_flush and (failing_since is not None or len(self._buffer) < self.max_buffered_rows):
                continue  # woken early: only a full buffer, and only while writes succeed, flushes early
            next_flush = now + self.flush_interval  # a fixed rate: the interval counts from this swap
            try:
                self.flush()
            except Exception as exc:  # keep serving; the rows wait for the next try
                if failing_since is None:
                    failing_since = now
                    log.error(
                        "prediction log: cannot write to %s (%s); %d row(s) waiting, retrying every %.3gs",
                        self.directory, exc, self.buffered_rows, self.flush_interval,
                    )  # fmt: skip
                if self._dropped > reported_drops:
                    log.error(
                        "prediction log: buffer full (%d rows) while writes fail: %d oldest rows dropped",
                        self.max_pending_rows, self._dropped - reported_drops,
                    )  # fmt: skip
                    reported_drops = self._dropped
            else:
                if failing_since is not None:
                    log.warning(
                        "prediction log: writing to %s again after %.1fs of failures",
                        self.directory, time.monotonic() - failing_since,
                    )  # fmt: skip
                    failing_since = None


def _tolerant_table(rows: list[Record]) -> tuple[pa.Table, int]:
    """The rows as a table, and how many malformed rows were left out (each logged)."""
    try:
        return _records_to_table(rows), 0
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    good: list[Record] = []  # a malformed row must not block the whole batch forever
    for row in rows:
        try:
            _records_to_table([row])
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            log.error("prediction log: dropped a malformed row of request %r: %s", row[0], exc)
        else:
            good.append(row)
    return _records_to_table(good), len(rows) - len(good)


def _settle(future: asyncio.Future[None], error: OSError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(
            PredictionLogError(f"prediction log: fsync failed ({error}); the answer is not sent")
        )


def recover_segments(directory: str | os.PathLike[str]) -> int:
    """Convert to Parquet the segments under ``directory`` that no live writer holds; return the rows.

    Idempotent: a day whose file (named by the segment) exists is not written again.
    """
    path = Path(directory)
    recovered = 0
    for segment_path, _fd in write_ahead.orphans(path):
        decoded = write_ahead.read_segment(segment_path)
        if decoded is None:
            continue
        segment_id = write_ahead.segment_id(segment_path)
        for day, rows in _by_day(decoded.records):
            if not (path / f"date={day}" / _part_name(segment_id)).exists():
                _write_parquet_atomically(_tolerant_table(rows)[0], path / f"date={day}", segment_id)
                recovered += len(rows)
        segment_path.unlink()
        ignored = decoded.ignored_bytes
        torn = f"; {ignored} byte(s) of a torn last record ignored" if ignored else ""
        log.warning("prediction log: recovered %d row(s) from %s, left by a writer that died%s",
                    len(decoded.records), segment_path.name, torn)  # fmt: skip
    return recovered


def read_prediction_log(directory: str | os.PathLike[str]) -> pa.Table:
    """Every logged prediction under ``directory`` (an empty table when there are none).

    Complete Parquet files (``part-*.parquet``; never the dot-named temporary file of an
    interrupted write) and the rows of write-ahead segments not yet converted, each row once.
    """
    files, pending = segment_rows_not_in_parquet(Path(directory))
    tables = [ds.dataset(files, schema=SCHEMA, format="parquet").to_table()] if files else []
    if pending.num_rows:
        tables.append(pending)
    if not tables:
        return SCHEMA.empty_table()
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def segment_rows_not_in_parquet(directory: Path) -> tuple[list[str], pa.Table]:
    """The log's Parquet files and the rows of its segments that are in none of them: each row once.

    The segments are read first: a conversion finishing meanwhile shows in the file listing, and
    its rows are then taken from the file only.
    """
    pending = unconverted_rows(directory)
    files = sorted(str(p) for p in directory.rglob("part-*.parquet")) if directory.is_dir() else []
    return files, _not_in(pending, directory)


def unconverted_rows(directory: Path) -> pa.Table:
    """The rows of every segment under ``directory`` (live or orphaned), with a ``_segment`` column.

    Call ``_not_in`` after listing the Parquet files to drop the days converted meanwhile.
    """
    parts = []
    for segment_path in write_ahead.segment_paths(directory):
        decoded = write_ahead.read_segment(segment_path)
        if decoded is not None and decoded.records:
            table = _tolerant_table(decoded.records)[0]
            parts.append(table.append_column("_segment", pa.array([segment_path.name] * table.num_rows)))
    if not parts:
        return SCHEMA.append(pa.field("_segment", pa.string())).empty_table()
    return pa.concat_tables(parts)


def _not_in(rows: pa.Table, directory: Path) -> pa.Table:
    """``rows`` without those whose day's Parquet file (named by their segment) exists; schema ``SCHEMA``."""
    if rows.num_rows == 0:
        return SCHEMA.empty_table()
    keep = []
    segments = rows.column("_segment").to_pylist()
    times = rows.column("time").cast(pa.int64()).to_pylist()
    cache: dict[tuple[str, int], bool] = {}
    for segment_name, at in zip(segments, times, strict=True):
        key = (segment_name, at // _DAY_US)
        if key not in cache:
            name = _part_name(write_ahead.segment_id(Path(segment_name)))
            cache[key] = not (directory / f"date={_day_name(key[1])}" / name).exists()
        keep.append(cache[key])
    return rows.filter(pa.array(keep)).drop_columns(["_segment"])


_encode = json.JSONEncoder(default=str, allow_nan=False).encode  # built once: json.dumps with these
# arguments would build a new encoder on every call, a third of its cost for a small row


def _utc_microseconds(at: datetime) -> int:
    if at.tzinfo is None:
        raise InvalidInputError(f"prediction log: time {at} has no time zone; give an aware (UTC) time")
    return (at - _EPOCH) // timedelta(microseconds=1)


def _json(row: Mapping[str, Any]) -> str:
    try:
        return _encode(row)
    except ValueError:  # NaN or infinity somewhere: strict JSON has no token for them
        return _encode(_finite(row))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _by_day(records: list[Record]) -> Iterator[tuple[str, list[Record]]]:
    if not records:
        return
    first, last = records[0][2] // _DAY_US, records[-1][2] // _DAY_US
    if first == last and all(r[2] // _DAY_US == first for r in records):
        yield _day_name(first), list(records)
        return
    days: dict[int, list[Record]] = {}
    for record in records:
        days.setdefault(record[2] // _DAY_US, []).append(record)
    for day in sorted(days):
        yield _day_name(day), days[day]


def _day_name(day: int) -> str:
    return f"{datetime.fromtimestamp(day * 86_400, UTC):%Y-%m-%d}"


def _records_to_table(records: list[Record]) -> pa.Table:
    columns = list(zip(*records, strict=True)) if records else [() for _ in SCHEMA]
    arrays = [pa.array(col, type=field.type) for col, field in zip(columns, SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _part_name(batch_id: str) -> str:
    return f"part-{batch_id}.parquet"


def _write_parquet_atomically(table: pa.Table, directory: Path, batch_id: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = _part_name(batch_id)
    tmp = directory / f".{name}.tmp"
    final = directory / name
    try:
        with tmp.open("wb") as out:
            pq.write_table(table, out, compression="zstd")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return final
