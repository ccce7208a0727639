"""The prediction log: every prediction served, written to Parquet by a buffered background writer.

Request handlers only append to an in-memory buffer; a thread writes the buffer to a new Parquet
file every ``flush_interval`` seconds (sooner when ``max_buffered_rows`` is reached) and on
``close()``. Each file is written under a temporary dot-name and renamed, so readers never see a
partial file. A crash (``kill -9``) loses at most what was buffered since the last flush: at most
``flush_interval`` seconds of predictions.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

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


class PredictionLogWriter:
    """Buffers prediction records and writes them as Parquet files under ``directory``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        max_buffered_rows: int = 50_000,
        start: bool = True,
    ) -> None:
        """``start=False`` defers the background thread to ``start()`` (an app starts it when it runs)."""
        self.directory = Path(directory)
        self.flush_interval = flush_interval
        self.max_buffered_rows = max_buffered_rows
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the background writer (once)."""
        if not self._thread.is_alive() and not self._closed.is_set():
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
    ) -> None:
        """Record one request's predictions (one log row per prediction)."""
        now = datetime.now(UTC)
        records = [
            (request_id, i, now, model, version, route, json.dumps(row, default=str), float(p), latency_ms)
            for i, (row, p) in enumerate(zip(inputs, predictions, strict=True))
        ]
        with self._lock:
            self._buffer.extend(records)
            full = len(self._buffer) >= self.max_buffered_rows
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write what is buffered to a new file now; return the number of rows written.

        When the write fails the records go back to the front of the buffer, to be retried on
        the next flush, and the error is raised.
        """
        with self._write_lock:
            with self._lock:
                records, self._buffer = self._buffer, []
            if not records:
                return 0
            columns = list(zip(*records, strict=True))
            table = pa.Table.from_arrays(
                [pa.array(col, type=field.type) for col, field in zip(columns, SCHEMA, strict=True)],
                schema=SCHEMA,
            )
            try:
                _write_parquet_atomically(table, self.directory / f"date={records[0][2]:%Y-%m-%d}")
            except BaseException:
                with self._lock:
                    self._buffer[:0] = records
                raise
            return len(records)

    def close(self) -> None:
        """Stop the background thread after a final flush."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        failing = False
        while not self._closed.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except OSError as exc:  # keep serving; the records stay buffered for the next try
                if not failing:
                    log.error("prediction log: cannot write to %s (%s); retrying every %.1fs",
                              self.directory, exc, self.flush_interval)  # fmt: skip
                failing = True
            else:
                failing = False


def read_prediction_log(directory: str | os.PathLike[str]) -> pa.Table:
    """Every logged prediction under ``directory`` (an empty table when there are none)."""
    path = Path(directory)
    files = sorted(str(p) for p in path.rglob("part-*.parquet")) if path.is_dir() else []
    if not files:
        return SCHEMA.empty_table()
    return ds.dataset(files, schema=SCHEMA, format="parquet").to_table()


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
    return final
