"""Write-ahead segments of the prediction log: each answered request appended to a file before its answer.

A segment is a file ``_wal/seg-<id>.wal`` under the log directory, created and locked with
``flock`` by the one process writing it. A request's log rows are one record::

    <payload length: u32 LE> <crc32 of payload: u32 LE> <payload>

and the payload is UTF-8 text: a JSON header ``[request_id, time_us, model, version, route,
latency_ms, [prediction, ...]]`` then, one line each, the rows' inputs as the JSON text that is
logged (JSON text never holds a raw newline).

The records are copied into a shared memory mapping of the file (``mmap``, ``MAP_SHARED``): the
copy lands in the operating system's page cache, so once ``append`` returns the record survives the
death of the process (``kill -9``) exactly as an ``os.write`` would, without a system call per
request (a request's ``os.write`` cost more than the rest of its logging). The file is grown by
``CHUNK_BYTES`` at a time with ``posix_fallocate`` (disk space is reserved before a record is
copied, so a full disk refuses the append instead of failing later), which leaves zeros after the
last record until the segment is closed (then it is cut to its records); a zero length ends the
records. Surviving a power loss needs an ``fsync`` as well (it writes the mapped pages too).
Where a file cannot be mapped, records are written with ``os.pwrite``, one call each.

A crash can leave a torn last record (a power loss in the middle of a write): reading stops at the
first record whose length or checksum does not hold, and says how many bytes it ignored.
"""

from __future__ import annotations

import fcntl
import json
import math
import mmap
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
CHUNK_BYTES = 1 << 20  # the segment file is reserved and mapped this much at a time
_PAGE = mmap.ALLOCATIONGRANULARITY
_string = json.encoder.encode_basestring_ascii  # C; any text as a JSON string (non-ASCII escaped)
_SPECIAL = {math.inf: "Infinity", -math.inf: "-Infinity"}
_encode_header = json.JSONEncoder(allow_nan=True, default=str).encode


def new_segment_id() -> str:
    """A sortable, unique id: the creation time then random hex (also names the segment's Parquet files)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


def encode(records: list[Record]) -> bytes:
    """One framed record holding a request's rows (all share request id, time, model, route, latency)."""
    first = records[0]
    latency, prediction = first[8], first[7]
    try:  # the JSON json.dumps writes (without its spaces), several times faster for a 7-item header
        middle = _middles.get((first[3], first[4], first[5])) or _middle(first[3], first[4], first[5])
        if len(records) == 1 and type(prediction) is float and prediction - prediction == 0.0:
            predictions = f"{prediction!r}"  # finite: its repr is its JSON
        else:
            predictions = ",".join([_number(r[7]) for r in records])
        lat = f"{latency!r}" if type(latency) is float and latency - latency == 0.0 else _number(latency)
        header = f"[{_string(first[0])},{first[2]:d},{middle},{lat},[{predictions}]]"
    except (TypeError, ValueError):  # a value of another type (the Parquet write refuses the row later)
        values = [first[0], first[2], first[3], first[4], first[5], latency, [r[7] for r in records]]
        header = _encode_header(values)
    text = f"{header}\n{first[6]}" if len(records) == 1 else "\n".join([header, *(r[6] for r in records)])
    payload = text.encode("utf-8", "surrogatepass")
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


_middles: dict[tuple[str, int, str], str] = {}  # model, version, route -> their JSON, written once


def _middle(model: str, version: int, route: str) -> str:
    text = f"{_string(model)},{version:d},{_string(route)}"
    if len(_middles) >= 1024:  # a few models, versions and routes: bounded all the same
        _middles.clear()
    _middles[(model, version, route)] = text
    return text


def _number(value: float) -> str:
    """A float as JSON text, NaN and infinities as ``json.dumps`` writes them (predictions may be NaN)."""
    if type(value) is not float:
        value = float(value)
    if math.isfinite(value):
        return float.__repr__(value)
    return _SPECIAL.get(value, "NaN")


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
        if length == 0:  # the reserved, not yet written part of a segment (a record is never empty)
            break
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
    return Decoded(records, offset, len(data[offset:].rstrip(b"\0")))  # the reserved zeros are not torn


class Segment:
    """One segment file, created and locked by this process; ``append`` hands a record to the OS."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.id = new_segment_id()
        self.path = directory / f"seg-{self.id}{_SUFFIX}"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.size = 0  # bytes of records
        self.closed = False
        self._map: mmap.mmap | None = None
        self._map_start = self._map_end = 0  # the file range mapped (and reserved)
        self._mappable = True
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # recovery leaves a live writer's one alone
        except OSError:
            os.close(self.fd)
            raise

    def append(self, frame: bytes) -> None:
        """Copy ``frame`` after the last record; raises ``OSError`` (nothing written) when it cannot."""
        end = self.size + len(frame)
        if end > self._map_end and self._mappable:
            self._remap(len(frame))
        if self._map is not None:
            self._map[self.size - self._map_start : end - self._map_start] = frame
        else:
            written = os.pwrite(self.fd, frame, self.size)
            if written != len(frame):  # a regular file short-writes only when the disk is full
                raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes (disk full?)")
        self.size = end

    def _remap(self, needed: int) -> None:
        """Reserve and map the next range of the file, from the page of the end of the records."""
        start = self.size - self.size % _PAGE
        length = -(-max(CHUNK_BYTES, self.size - start + needed) // _PAGE) * _PAGE
        os.posix_fallocate(self.fd, start, length)  # ENOSPC here, before anything is copied
        try:
            mapped = mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED, offset=start)
        except (OSError, ValueError):  # a file system without shared mappings: one pwrite per record
            self._mappable = False
            mapped = None
        if self._map is not None:
            self._map.close()
        self._map, self._map_start, self._map_end = mapped, start, start + length

    def sync(self) -> None:
        if not self.closed:
            os.fsync(self.fd)  # Linux writes a file's pages dirtied through shared mappings too

    def remove(self) -> None:
        """Delete the file (its rows are durably elsewhere) and release the lock."""
        self.path.unlink(missing_ok=True)
        self._release(truncate=False)

    def close(self) -> None:
        """Unmap, cut the file to its records (no reserved zeros left behind), release the lock."""
        self._release(truncate=True)

    def _release(self, *, truncate: bool) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._map is not None:
                self._map.close()
                self._map = None
            if truncate:
                os.ftruncate(self.fd, self.size)
        finally:
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
