"""Online stores: the latest feature values per entity key, read one key at a time while serving.

A store holds, per feature view and entity key, one ``OnlineRecord``: the event time and created time
of the row it came from and that row's feature values as a JSON object. Two backends share one contract:
``SqliteOnlineStore`` (one file, WAL, in-process reads in microseconds) and ``RedisOnlineStore`` (a hash
per record at ``{prefix}:{view}:{key}``, shared by several servers).

``SqliteOnlineStore.read_entries_shared`` (the serving lookup) keeps the records it read in a small cache
per connection, checked on every read against SQLite's ``PRAGMA data_version`` (which changes whenever
another connection, in this process or another, commits to the file) and emptied by this connection's
own writes: a cached record is served only while the file is unchanged, so it is never stale. Any
commit empties every connection's cache, so under a steady stream of pushes reads go to the file.

Keys are the entity's key values as canonical JSON (``encode_key``), so ``1``, ``numpy.int64(1)`` and
``1.0`` name the same entity, as they compare equal in a join. Feature values are stored as JSON: NaN is
stored as null, numpy scalars and arrays as plain numbers and lists, timestamps as ISO strings in UTC.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> key = encode_key([1001])
    >>> with tempfile.TemporaryDirectory() as tmp, SqliteOnlineStore(Path(tmp) / "online.db") as store:
    ...     store.write("driver_stats", [OnlineRecord(key, 2_000_000, 2_000_000, {"rate": 0.5})])
    ...     older = OnlineRecord(key, 1_000_000, 3_000_000, {"rate": 0.1})
    ...     store.write("driver_stats", [older], only_newer=True)
    ...     store.read("driver_stats", [key, encode_key([9])])
    1
    0
    [OnlineRecord(key='[1001]', event_time_us=2000000, created_time_us=2000000, values={'rate': 0.5}), None]
"""

from __future__ import annotations

import functools
import json
import math
import operator
import sqlite3
import threading
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

import redis

from mlprod.errors import InvalidInputError, MlprodError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")

_SQLITE_CHUNK = 500
_REDIS_CHUNK = 1000


def encode_key(values: Sequence[Any]) -> str:
    """The canonical JSON text of an entity's key values, as the online store indexes them.

    numpy scalars become Python numbers, whole floats become integers (``1.0`` equals ``1`` in a join),
    timestamps become ISO strings in UTC (naive ones are taken as UTC). A null key (None, NaN, NaT) names
    no entity and is refused.

    Examples:
        >>> import numpy as np, pandas as pd
        >>> encode_key([np.int64(1001), "Paris"])
        '[1001,"Paris"]'
        >>> encode_key([1.0]) == encode_key([1]) == encode_key([np.float32(1)])
        True
        >>> encode_key([pd.Timestamp("2024-03-01 12:00", tz="Europe/Paris")])
        '["2024-03-01T11:00:00+00:00"]'
        >>> encode_key([7, None])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlprod.errors.InvalidInputError: entity key [7, None] has a null value at position 1: ...
    """
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInputError(
            f"entity key must be a list of key values, got {type(values).__name__} {values!r}: "
            "wrap a single value as [value]"
        )
    canonical = []
    for position, value in enumerate(values):
        plain = _canonical_key_value(value)
        if plain is None:
            raise InvalidInputError(
                f"entity key {list(values)!r} has a null value at position {position}: "
                "null keys name no entity; drop or fill these rows"
            )
        canonical.append(plain)
    return json.dumps(canonical, separators=(",", ":"), allow_nan=False)


def encode_keys(columns: Sequence[Sequence[Any]]) -> list[str]:
    """``encode_key`` for many keys given column by column (one sequence per key column), fast for
    the usual integer and string keys.

    Examples:
        >>> encode_keys([[1, 2], ["JFK", "LGA"]]) == [encode_key([1, "JFK"]), encode_key([2, "LGA"])]
        True
    """
    parts = [[_key_text(value) for value in column] for column in columns]
    return ["[" + ",".join(texts) + "]" for texts in zip(*parts, strict=True)]


def _key_text(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str:
        return json.dumps(value)
    return encode_key([value])[1:-1]


def _canonical_key_value(value: Any) -> Any:
    """``value`` as a JSON scalar that is equal for equal keys; None for a null."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise InvalidInputError(f"entity key value {value!r} is infinite: keys must be finite numbers")
        return int(value) if value.is_integer() else value
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    raise InvalidInputError(
        f"entity key value {value!r} has type {type(value).__name__}: "
        "keys must be strings, integers, floats, booleans, dates or timestamps"
    )


def _iso_utc(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class OnlineRecord:
    """The feature values of one entity key in one view, with the times of the row they came from.

    ``key`` comes from ``encode_key``; times are microseconds since the Unix epoch (UTC); ``values``
    maps feature names to JSON-able values.
    """

    key: str
    event_time_us: int
    created_time_us: int
    values: dict[str, Any]


class OnlineStore(ABC):
    """Latest feature values per (view, key); every backend passes ``tests/features/test_online_store.py``."""

    @abstractmethod
    def write(self, view: str, records: Sequence[OnlineRecord], *, only_newer: bool = False) -> int:
        """Upsert ``records`` into ``view``; return how many rows were written.

        With ``only_newer`` a record replaces the stored one only if its (event time, created time) is
        greater, so replaying old rows or racing writers never move a key back in time.
        """

    @abstractmethod
    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        """The record of each key of ``keys`` in ``view``, in order; None for a key never written."""

    def read_entries(self, entries: Sequence[tuple[str, str]]) -> list[OnlineRecord | None]:
        """The record of each ``(view, key)``, in order: one entity's features across its views in
        one round trip (what a serving lookup needs). Backends override it when they can batch."""
        return [self.read(view, [key])[0] for view, key in entries]

    def read_entries_shared(self, entries: Sequence[tuple[str, str]]) -> list[OnlineRecord | None]:
        """``read_entries`` for a caller that only reads the records: a backend may hand out records
        it keeps (a cache), so their ``values`` must not be changed."""
        return self.read_entries(entries)

    @abstractmethod
    def clear(self, view: str) -> None:
        """Forget every record of ``view``; other views stay."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _decoded(payload: str) -> dict[str, Any]:
    """A stored payload decoded, once by its text when it is small: a record read again after an
    unrelated commit (which empties the read caches) is not decoded again. Shared: callers must not
    change it."""
    if len(payload) > _REMEMBERED_PAYLOAD_CHARS:
        decoded: dict[str, Any] = json.loads(payload)
        return decoded
    return _decoded_small(payload)


_REMEMBERED_PAYLOAD_CHARS = 4096  # larger payloads (embeddings…) are decoded each time: bounded memory


@functools.lru_cache(maxsize=16_384)
def _decoded_small(payload: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(payload)
    return decoded


def _check_view(view: str) -> None:
    # ':' separates the parts of a Redis key: a view "a:b" would be cleared along with view "a"
    if not isinstance(view, str) or not view or ":" in view:
        raise InvalidInputError(
            f"online store view name {view!r} is not valid: use a non-empty name without ':'"
        )


def _rows(view: str, records: Sequence[OnlineRecord]) -> list[tuple[str, int, int, str]]:
    """(key, event us, created us, payload) per record, checked: the part every backend stores."""
    _check_view(view)
    rows = []
    for record in records:
        if not isinstance(record, OnlineRecord):
            raise InvalidInputError(f"online store writes OnlineRecord objects, got {type(record).__name__}")
        if not isinstance(record.key, str):
            raise InvalidInputError(
                f"online record key {record.key!r} must be a str: build it with encode_key(key_values)"
            )
        try:
            event, created = operator.index(record.event_time_us), operator.index(record.created_time_us)
        except TypeError:
            raise InvalidInputError(
                f"online record {record.key} has times {record.event_time_us!r}, {record.created_time_us!r}: "
                "expected integer microseconds since the epoch"
            ) from None
        rows.append((record.key, event, created, _dump_values(record.key, record.values)))
    return rows


def _dump_values(key: str, values: Mapping[str, Any]) -> str:
    if not isinstance(values, Mapping):
        raise InvalidInputError(f"online record {key} values must be a dict of features, got {values!r}")
    try:
        try:
            return json.dumps(values, separators=(",", ":"), allow_nan=False, default=_jsonable)
        except ValueError:  # NaN somewhere: the rare path pays for the walk that turns it into null
            return json.dumps(_nan_to_none(values), separators=(",", ":"), default=_jsonable)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"online record {key} has a value that is not JSON-able: {exc}") from exc


def _jsonable(value: Any) -> Any:
    """json.dumps fallback for the types feature frames hold."""
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64):
        stamp = pd.Timestamp(value)
        return None if stamp is pd.NaT else _iso_utc(stamp)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{value!r} of type {type(value).__name__} cannot be stored")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {name: _nan_to_none(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, np.ndarray):
        return _nan_to_none(value.tolist())
    return value


_CREATE = """
CREATE TABLE IF NOT EXISTS online_features (
    view TEXT NOT NULL,
    key TEXT NOT NULL,
    event_time_us INTEGER NOT NULL,
    created_time_us INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (view, key)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO online_features (view, key, event_time_us, created_time_us, payload) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (view, key) DO UPDATE SET
    event_time_us = excluded.event_time_us,
    created_time_us = excluded.created_time_us,
    payload = excluded.payload
"""
_UPSERT_NEWER = (
    _UPSERT
    + """WHERE (excluded.event_time_us, excluded.created_time_us)
    > (online_features.event_time_us, online_features.created_time_us)
"""
)
_SELECT = "SELECT key, event_time_us, created_time_us, payload FROM online_features WHERE view = ? AND key "
_SELECT_ONE = _SELECT + "= ?"
_DATA_VERSION = "PRAGMA data_version"
_CACHED_RECORDS = 16_384  # per connection (thread): past it, the oldest cached record is forgotten


class _Connection:
    """A thread's SQLite connection; closed when its thread ends (the thread-local drops it) or on close().

    ``cache`` holds the records ``read_entries`` read (None for an unknown key), valid while the
    connection's ``PRAGMA data_version`` equals ``version`` and this connection has not written since.
    """

    __slots__ = ("__weakref__", "cache", "sqlite", "version", "version_cursor")

    def __init__(self, sqlite: sqlite3.Connection) -> None:
        self.sqlite = sqlite
        self.version_cursor = sqlite.cursor()  # reused: a cursor per check costs more than the check
        self.cache: OrderedDict[tuple[str, str], OnlineRecord | None] = OrderedDict()
        self.version: int | None = None

    def __del__(self) -> None:
        self.sqlite.close()


class SqliteOnlineStore(OnlineStore):
    """An online store in one SQLite file (WAL): each thread reads through its own connection.

    Readers never wait for each other or for a writer; writers take turns. Several processes may share
    the file on a local disk.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connection()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_CREATE)
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise self._error(exc) from exc

    def _connection(self) -> sqlite3.Connection:
        return self._thread_connection().sqlite

    def _thread_connection(self) -> _Connection:
        if self._closed:
            raise MlprodError(f"the online store {self.path} is closed: open a new SqliteOnlineStore")
        try:
            return self._local.conn  # type: ignore[no-any-return]
        except AttributeError:
            pass
        sqlite = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        sqlite.execute("PRAGMA synchronous=NORMAL")
        self._local.conn = conn = _Connection(sqlite)
        with self._lock:
            self._open.add(conn)
        return conn

    def _error(self, exc: Exception) -> MlprodError:
        return MlprodError(f"the online store {self.path} failed: {exc} (is it a writable SQLite file?)")

    def write(self, view: str, records: Sequence[OnlineRecord], *, only_newer: bool = False) -> int:
        rows = [(view, *row) for row in _rows(view, records)]
        if not rows:
            return 0
        local = self._thread_connection()
        conn = local.sqlite
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                written = conn.executemany(_UPSERT_NEWER if only_newer else _UPSERT, rows).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        finally:  # data_version does not move for this connection's own commits: forget what it read
            local.cache.clear()
        return written

    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        conn = self._connection()
        try:
            if len(keys) == 1:
                row = conn.execute(_SELECT_ONE, (view, keys[0])).fetchone()
                return [None if row is None else OnlineRecord(row[0], row[1], row[2], json.loads(row[3]))]
            found = {}
            for start in range(0, len(keys), _SQLITE_CHUNK):
                chunk = keys[start : start + _SQLITE_CHUNK]
                sql = _SELECT + f"IN ({','.join('?' * len(chunk))})"
                for key, event, created, payload in conn.execute(sql, (view, *chunk)):
                    found[key] = OnlineRecord(key, event, created, json.loads(payload))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return [found.get(key) for key in keys]

    def read_entries(self, entries: Sequence[tuple[str, str]]) -> list[OnlineRecord | None]:
        """Like ``read_entries_shared``, with each record's values copied (one level deep: values that
        are lists or objects stay shared), so a caller may change the mapping."""
        copies: list[OnlineRecord | None] = []
        for record in self.read_entries_shared(entries):
            if record is not None:
                record = OnlineRecord(
                    record.key, record.event_time_us, record.created_time_us, dict(record.values)
                )
            copies.append(record)
        return copies

    def read_entries_shared(self, entries: Sequence[tuple[str, str]]) -> list[OnlineRecord | None]:
        """The records of ``entries``, all from one snapshot of the file. They come from the
        connection's cache when it holds them all and ``PRAGMA data_version`` says no other connection
        has committed since they were read (and this one has not written): one cheap statement
        instead of a query and a JSON decode per view. Otherwise one query reads them all again."""
        if len(entries) > _SQLITE_CHUNK // 2:
            return super().read_entries(entries)
        local = self._thread_connection()
        cache = local.cache
        try:
            version = local.version_cursor.execute(_DATA_VERSION).fetchone()[0]
            if version != local.version:
                cache.clear()
                local.version = version
            if any(entry not in cache for entry in entries):
                self._read_into(local, entries)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return [cache[entry] for entry in entries]

    @staticmethod
    def _read_into(local: _Connection, entries: Sequence[tuple[str, str]]) -> None:
        """Read every one of ``entries`` (one statement: one snapshot) into ``local.cache``, None for
        a key never written.

        The snapshot may be newer than ``local.version``, the version checked just before; then the
        next check sees a newer version and empties the cache: a value is never served stale."""
        unique = list(dict.fromkeys(entries))
        cache = local.cache
        while cache and len(cache) + len(unique) > _CACHED_RECORDS:
            cache.popitem(last=False)  # the oldest first
        where = " OR ".join(["(view = ? AND key = ?)"] * len(unique))
        sql = "SELECT view, key, event_time_us, created_time_us, payload FROM online_features WHERE " + where
        rows = local.sqlite.execute(sql, [part for entry in unique for part in entry]).fetchall()
        found = {(v, k): OnlineRecord(k, e, c, _decoded(p)) for v, k, e, c, p in rows}
        for entry in unique:
            cache[entry] = found.get(entry)

    def clear(self, view: str) -> None:
        _check_view(view)
        local = self._thread_connection()
        try:
            local.sqlite.execute("DELETE FROM online_features WHERE view = ?", (view,))
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        finally:
            local.cache.clear()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            open_connections = list(self._open)
            self._open.clear()
        for conn in open_connections:
            conn.sqlite.close()

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({str(self.path)!r})"


# KEYS[1] = record hash; ARGV = event us, created us, payload. Lua numbers are doubles: exact to 2**53 us
# (year 2255).
_WRITE_IF_NEWER = """
local stored = redis.call('HMGET', KEYS[1], 'e', 'c')
if stored[1] then
    local event, created = tonumber(ARGV[1]), tonumber(ARGV[2])
    local old_event, old_created = tonumber(stored[1]), tonumber(stored[2])
    if event < old_event or (event == old_event and created <= old_created) then
        return 0
    end
end
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'c', ARGV[2], 'v', ARGV[3])
return 1
"""


class RedisOnlineStore(OnlineStore):
    """An online store in Redis: record ``key`` of ``view`` is the hash ``{prefix}:{view}:{key}``.

    The hash has fields ``e`` (event time, us), ``c`` (created time, us) and ``v`` (values as JSON).
    Connections are made on first use and pooled; the store is safe to share between threads.
    """

    def __init__(self, url: str, prefix: str = "mlprod") -> None:
        if not isinstance(prefix, str) or not prefix:
            raise InvalidInputError(f"Redis key prefix {prefix!r} must be a non-empty string")
        self.url = url
        self.prefix = prefix
        self._shown_url = _hide_password(url)
        self._script_sha: str | None = None
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        except ValueError as exc:
            raise InvalidInputError(f"Redis URL {self._shown_url!r} is not valid: {exc}") from exc

    def _name(self, view: str, key: str) -> str:
        return f"{self.prefix}:{view}:{key}"

    def _error(self, exc: redis.RedisError) -> MlprodError:
        if isinstance(exc, redis.AuthenticationError):
            return MlprodError(f"Redis at {self._shown_url} refused the credentials: {exc}; fix the URL")
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return MlprodError(
                f"Redis at {self._shown_url} is unreachable: {exc}; start the server or fix the URL"
            )
        return MlprodError(f"Redis at {self._shown_url} failed: {exc}")

    def write(self, view: str, records: Sequence[OnlineRecord], *, only_newer: bool = False) -> int:
        rows = _rows(view, records)
        written = 0
        try:
            for start in range(0, len(rows), _REDIS_CHUNK):
                chunk = rows[start : start + _REDIS_CHUNK]
                if only_newer:
                    written += self._write_if_newer(view, chunk)
                    continue
                pipe = self._client.pipeline(transaction=False)
                for key, event, created, payload in chunk:
                    pipe.hset(self._name(view, key), mapping={"e": event, "c": created, "v": payload})
                pipe.execute()
                written += len(chunk)
        except redis.RedisError as exc:
            raise self._error(exc) from exc
        return written

    def _write_if_newer(self, view: str, chunk: list[tuple[str, int, int, str]]) -> int:
        for attempt in (1, 2):
            if self._script_sha is None:
                self._script_sha = self._client.script_load(_WRITE_IF_NEWER)
            pipe = self._client.pipeline(transaction=False)
            for key, event, created, payload in chunk:
                pipe.evalsha(self._script_sha, 1, self._name(view, key), event, created, payload)
            try:
                return sum(pipe.execute())
            except redis.exceptions.NoScriptError:  # the server restarted or flushed its scripts
                self._script_sha = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def read(self, view: str, keys: Sequence[str]) -> list[OnlineRecord | None]:
        stored: list[Any]  # [event, created, payload] as bytes, or Nones for a missing key
        try:
            if len(keys) == 1:
                stored = [self._client.hmget(self._name(view, keys[0]), "e", "c", "v")]
            else:
                stored = []
                for start in range(0, len(keys), _REDIS_CHUNK):
                    pipe = self._client.pipeline(transaction=False)
                    for key in keys[start : start + _REDIS_CHUNK]:
                        pipe.hmget(self._name(view, key), "e", "c", "v")
                    stored.extend(pipe.execute())
        except redis.RedisError as exc:
            raise self._error(exc) from exc
        return [
            None if payload is None else OnlineRecord(key, int(event), int(created), json.loads(payload))
            for key, (event, created, payload) in zip(keys, stored, strict=True)
        ]

    def read_entries(self, entries: Sequence[tuple[str, str]]) -> list[OnlineRecord | None]:
        if len(entries) <= 1 or len(entries) > _REDIS_CHUNK:
            return super().read_entries(entries)
        try:
            pipe = self._client.pipeline(transaction=False)
            for view, key in entries:
                pipe.hmget(self._name(view, key), "e", "c", "v")
            stored = pipe.execute()
        except redis.RedisError as exc:
            raise self._error(exc) from exc
        return [
            None if payload is None else OnlineRecord(key, int(event), int(created), json.loads(payload))
            for (_, key), (event, created, payload) in zip(entries, stored, strict=True)
        ]

    def clear(self, view: str) -> None:
        _check_view(view)
        pattern = _glob_escape(self._name(view, "")) + "*"
        try:
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 500:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
        except redis.RedisError as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisOnlineStore({self._shown_url!r}, prefix={self.prefix!r})"


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "\\*?[]" else char for char in text)


def _hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return "<unparsable URL>"
