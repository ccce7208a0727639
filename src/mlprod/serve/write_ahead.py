"""Write-ahead segments of the prediction log: each answered request appended to a file before its answer.

A segment is a file ``_wal/seg-<id>.wal`` under the log directory, opened ``O_APPEND`` and locked
with ``flock`` by the one process writing it. A request's log rows are one record::

    <payload length: u32 LE> <crc32 of payload: u32 LE> <payload>

and the payload is UTF-8 text: a JSON header ``[request_id, time_us, model, version, route,
latency_ms, [prediction, ...]]`` then, one line each, the rows' inputs as the JSON text that is
logged (JSON text never holds a raw newline). One ``os.write`` per record hands it to the operating
system, so once ``append`` returns the record survives the death of the process (``kill -9``);
surviving a power loss needs an ``fsync`` as well.

A crash can leave a torn last record (a power loss in the middle of a write): reading stops at the
first record whose length or checksum does not hold, and says how many bytes it ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

WAL_DIR = "_wal"  # not "date=…", not "part-*.parquet": Parquet readers never look inside
_SUFFIX = ".wal"
_FRAME = struct.Struct("<II")
_MAX_RECORD = 1 << 30  # a length past this is a torn or damaged header, not a record
Record = tuple[str, int, int, str, int, str, str, float, float]
_encode_header = json.JSONEncoder(allow_nan=True).encode  # predictions may be NaN; request ids any text


def new_segment_id() -> str:
    """A sortable, unique id: the creation time then random hex (also names the segment's Parquet files)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


def encode(records: list[Record]) -> bytes:
    """One framed record holding a request's rows (all share request id, time, model, route, latency)."""
    first = records[0]
    predictions = [r[7] for r in records]
    header = _encode_header([first[0], first[2], first[3], first[4], first[5], first[8], predictions])
    payload = "\n".join([header, *(r[6] for r in records)]).encode("utf-8", "surrogatepass")
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass
class Decoded:
    """The records read from a segment and what was left unread after the last good one."""

    records: list[Record]
    good_bytes: int
    ignored_bytes: int


def decode(data: bytes) -> Decoded:
    """Every whole record of ``data``, up to the first torn or damaged one."""
    records: list[Record] = []
    offset, end = 0, len(data)
    while offset + _FRAME.size <= end:
        length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        if length > _MAX_RECORD or start + length > end:
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        lines = payload.decode("utf-8", "surrogatepass").split("\n")
        try:
            request_id, time_us, model, version, route, latency_ms, predictions = json.loads(lines[0])
        except ValueError:
            break  # damaged bytes that happen to match their checksum: treat as the end
        inputs = lines[1:]
        if len(inputs) != len(predictions):
            break
        records.extend(
            (request_id, i, time_us, model, version, route, text, prediction, latency_ms)
            for i, (text, prediction) in enumerate(zip(inputs, predictions, strict=True))
        )
        offset = start + length
    return Decoded(records, offset, end - offset)


class Segment:
    """One segment file, created and locked by this process; ``append`` hands a record to the OS."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.id = new_segment_id()
        self.path = directory / f"seg-{self.id}{_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # recovery leaves a live writer's segment alone
        self.closed = False

    def append(self, frame: bytes) -> None:
        written = os.write(self.fd, frame)
        if written != len(frame):  # a regular file short-writes only when the disk is full
            raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes (disk full?)")

    def sync(self) -> None:
        if not self.closed:
            os.fsync(self.fd)

    def remove(self) -> None:
        """Delete the file (its rows are durably elsewhere) and release the lock."""
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


def segment_paths(log_dir: Path) -> list[Path]:
    """The segment files under ``log_dir``, oldest first."""
    wal = log_dir / WAL_DIR
    return sorted(wal.glob(f"seg-*{_SUFFIX}")) if wal.is_dir() else []


def segment_id(path: Path) -> str:
    return path.name.removeprefix("seg-").removesuffix(_SUFFIX)


def orphans(log_dir: Path) -> Iterator[tuple[Path, int]]:
    """Segments no live process holds (their writer died), each yielded with its fd locked by us."""
    for path in segment_paths(log_dir):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # converted meanwhile by its writer
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            if path.exists():  # not removed between the listing and the lock
                yield path, fd
        finally:
            os.close(fd)


def read_segment(path: Path) -> Decoded | None:
    """The records of one segment; None when it is gone (converted meanwhile)."""
    try:
        return decode(path.read_bytes())
    except FileNotFoundError:
        return None
