"""The prediction log: every prediction served, written to Parquet by a buffered background writer.

Request handlers only append to an in-memory buffer (one row per prediction: a few microseconds,
mostly JSON-encoding the inputs). A thread swaps the buffer out and writes it as a new file
``date=YYYY-MM-DD/part-<time>-<random>.parquet``:

- on a fixed timer, every ``flush_interval`` seconds;
- sooner when ``max_buffered_rows`` rows are waiting;
- on ``close()`` (the server's graceful shutdown), after the thread has stopped.

Each file is written under a temporary dot-name (``.part-….parquet.tmp``), fsynced, renamed, and
its directory fsynced, so a reader never sees a partial file: ``read_prediction_log`` reads only
``part-*.parquet`` names. A crash (``kill -9``) loses only the rows not yet renamed into place:
those appended in the last ``flush_interval`` plus the duration of one write. A killed write leaves
its dot-file behind; readers ignore it and it may be deleted. ``tests/serve/test_prediction_log_crash.py``
kills a real ``mlprod serve`` (0.5 s interval) with SIGKILL during traffic and checks it: every
request answered more than one interval (plus slack for the write) before the kill is on disk, all
files parse, nothing is written twice; here it lost 2 to 222 requests, all answered within the last
393 ms (see docs/prediction-log.md).

When writes fail (disk full, directory gone) the rows stay buffered and the write is retried every
``flush_interval``; the buffer is bounded by ``max_pending_rows`` (default twice
``max_buffered_rows``): past it the **oldest** rows are dropped, counted in ``dropped_rows`` and
logged, so a long disk failure costs old predictions, never the server's memory. The write in
progress holds at most that many rows more.

The inputs are stored as strict JSON text: NaN and infinities become ``null`` (Python's ``NaN``
token is not JSON; strict parsers such as JavaScript's ``JSON.parse`` refuse it) and values JSON
cannot hold are written with ``str``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mlprod.artifacts import fsync_dir
from mlprod.errors import InvalidInputError

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
_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Record = tuple[str, int, int, str, int, str, str, float, float]


class PredictionLogWriter:
    """Buffers prediction records and writes them as Parquet files under ``directory``.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     writer = PredictionLogWriter(directory, flush_interval=1.0)
        ...     writer.append(request_id="r1", model="toy", version=1, route="champion",
        ...                   inputs=[{"x": 1.0}], predictions=[0.25], latency_ms=2.0)
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
        self.directory = Path(directory)
        self.flush_interval = float(flush_interval)
        self.max_buffered_rows = max_buffered_rows
        self.max_pending_rows = pending
        self._buffer: deque[Record] = deque()
        self._dropped = 0
        self._closed = False
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        if start:
            self.start()

    @property
    def dropped_rows(self) -> int:
        """Rows lost because writes failed for long (oldest first), or appended after ``close()``."""
        return self._dropped

    @property
    def buffered_rows(self) -> int:
        """Rows waiting for the next write."""
        return len(self._buffer)

    def start(self) -> None:
        """Start the background writer (once; not after ``close()``)."""
        if not self._thread.is_alive() and not self._closed and self._thread.ident is None:
            self._thread.start()

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
    ) -> None:
        """Record one request's predictions (one log row per prediction); never touches the disk.

        ``at`` is the prediction's time (default now): replays and backfills of past traffic give it.
        """
        if len(inputs) != len(predictions):
            raise InvalidInputError(
                f"prediction log: request {request_id!r} has {len(inputs)} input row(s) "
                f"but {len(predictions)} prediction(s); pass one prediction per input row"
            )
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
        with self._lock:
            if self._closed:
                self._dropped += len(records)
                log.warning("prediction log: %d row(s) of request %s arrived after close; dropped",
                            len(records), request_id)  # fmt: skip
                return
            buffer = self._buffer
            buffer.extend(records)
            pending = len(buffer)
            if pending > self.max_pending_rows:
                self._drop_oldest(buffer)
        if pending >= self.max_buffered_rows:
            self._wake.set()

    def flush(self) -> int:
        """Write what is buffered to new file(s) now; return the number of rows written.

        When the write fails the rows go back to the front of the buffer (bounded by
        ``max_pending_rows``), to be retried on the next flush, and the error is raised.
        """
        with self._write_lock:
            with self._lock:
                records, self._buffer = self._buffer, deque()
            if not records:
                return 0
            days = list(_by_day(records))
            done = written = 0
            try:
                for day, rows in days:
                    table = self._table(rows)
                    if table.num_rows:
                        _write_parquet_atomically(table, self.directory / f"date={day}")
                    done += 1
                    written += table.num_rows
            except BaseException:
                unwritten = deque(
                    r for _, rows in days[done:] for r in rows
                )  # a written day is not rewritten
                with self._lock:
                    unwritten.extend(self._buffer)
                    self._buffer = unwritten
                    if len(unwritten) > self.max_pending_rows:
                        self._drop_oldest(unwritten)
                raise
            return written

    def close(self) -> None:
        """Stop the background thread, then write what is buffered (the graceful-shutdown flush).

        Raises the write's ``OSError`` when that last write fails, after logging how many rows
        are lost.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self.flush()
        except OSError as exc:
            log.error("prediction log: final write to %s failed (%s); %d row(s) lost",
                      self.directory, exc, len(self._buffer))  # fmt: skip
            raise

    def _drop_oldest(self, buffer: deque[Record]) -> None:
        excess = len(buffer) - self.max_pending_rows
        for _ in range(excess):
            buffer.popleft()
        self._dropped += excess

    def _table(self, rows: list[Record]) -> pa.Table:
        try:
            return _records_to_table(rows)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
        good: list[Record] = []  # a malformed row must not block the whole batch forever
        for row in rows:
            try:
                _records_to_table([row])
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                with self._lock:
                    self._dropped += 1
                log.error("prediction log: dropped a malformed row of request %r: %s", row[0], exc)
            else:
                good.append(row)
        return _records_to_table(good)

    def _run(self) -> None:
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
            except Exception as exc:  # keep serving; the rows stay buffered for the next try
                if failing_since is None:
                    failing_since = now
                    log.error(
                        "prediction log: cannot write to %s (%s); %d row(s) buffered, retrying every %.3gs",
                        self.directory, exc, len(self._buffer), self.flush_interval,
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


def read_prediction_log(directory: str | os.PathLike[str]) -> pa.Table:
    """Every logged prediction under ``directory`` (an empty table when there are none).

    Only complete files (``part-*.parquet``) are read; the dot-named temporary file of a write
    that a crash interrupted is ignored.
    """
    path = Path(directory)
    files = sorted(str(p) for p in path.rglob("part-*.parquet")) if path.is_dir() else []
    if not files:
        return SCHEMA.empty_table()
    return ds.dataset(files, schema=SCHEMA, format="parquet").to_table()


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


def _by_day(records: deque[Record]) -> Iterator[tuple[str, list[Record]]]:
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


def _write_parquet_atomically(table: pa.Table, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
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
