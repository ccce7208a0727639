"""One contract, run over every online-store backend; then what is particular to each."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
import redis

from mlprod.errors import InvalidInputError, MlprodError
from mlprod.features import online_store
from mlprod.features.online_store import (
    OnlineRecord,
    OnlineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
    encode_key,
)

from .conftest import free_port


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        opened: OnlineStore = SqliteOnlineStore(tmp_path / "online.db")
    else:  # a prefix per test keeps tests apart on the session's server
        opened = RedisOnlineStore(request.getfixturevalue("redis_url"), prefix=f"t{uuid.uuid4().hex[:8]}")
    with opened:
        yield opened


def record(key: object, event: int, created: int | None = None, **values: object) -> OnlineRecord:
    return OnlineRecord(encode_key([key]), event, event if created is None else created, dict(values))


# --- the contract --------------------------------------------------------------------------------------


def test_round_trip(store: OnlineStore) -> None:
    written = [record(1, 10, 11, rate=0.5, trips=3), record("b", 20, rate=None, trips=7)]
    assert store.write("drivers", written) == 2
    assert store.read("drivers", [encode_key([1]), encode_key(["b"])]) == written


def test_unknown_keys_and_views_read_as_none(store: OnlineStore) -> None:
    store.write("drivers", [record(1, 10, x=1)])
    assert store.read("drivers", [encode_key([2])]) == [None]
    assert store.read("riders", [encode_key([1])]) == [None]
    assert store.read("drivers", [encode_key([2]), encode_key([1])]) == [None, record(1, 10, x=1)]
    assert store.read("drivers", []) == []


def test_plain_write_replaces_even_with_older_rows(store: OnlineStore) -> None:
    store.write("v", [record(1, 10, x="new")])
    assert store.write("v", [record(1, 5, x="old")]) == 1
    assert store.read("v", [encode_key([1])]) == [record(1, 5, x="old")]


def test_only_newer_compares_event_time_then_created_time(store: OnlineStore) -> None:
    key = encode_key([1])
    assert store.write("v", [record(1, 10, 5, x="first")], only_newer=True) == 1
    assert store.write("v", [record(1, 9, 100, x="older event")], only_newer=True) == 0
    assert store.write("v", [record(1, 10, 5, x="full tie")], only_newer=True) == 0
    assert store.write("v", [record(1, 10, 4, x="earlier created")], only_newer=True) == 0
    assert store.read("v", [key]) == [record(1, 10, 5, x="first")]
    assert store.write("v", [record(1, 10, 6, x="later created")], only_newer=True) == 1
    assert store.read("v", [key]) == [record(1, 10, 6, x="later created")]
    assert store.write("v", [record(1, 11, 0, x="newer event")], only_newer=True) == 1
    assert store.read("v", [key]) == [record(1, 11, 0, x="newer event")]


def test_only_newer_within_one_batch_keeps_the_newest(store: OnlineStore) -> None:
    batch = [record(1, 30, x=30), record(1, 10, x=10), record(2, 5, x=5), record(1, 20, x=20)]
    assert store.write("v", batch, only_newer=True) == 2
    assert store.read("v", [encode_key([1]), encode_key([2])]) == [record(1, 30, x=30), record(2, 5, x=5)]


def test_clear_forgets_only_that_view(store: OnlineStore) -> None:
    for view in ["a", "ab", "b", "v[1]", "v1", "v*"]:
        store.write(view, [record(1, 10, view=view), record(2, 10, view=view)])
    store.clear("a")
    store.clear("v[1]")
    store.clear("v*")
    store.clear("never-written")
    keys = [encode_key([1]), encode_key([2])]
    assert store.read("a", keys) == [None, None]
    assert store.read("v[1]", keys) == [None, None]
    assert store.read("v*", keys) == [None, None]
    for view in ["ab", "b", "v1"]:
        assert store.read(view, keys) == [record(1, 10, view=view), record(2, 10, view=view)]
    store.write("a", [record(3, 1)])
    assert store.read("a", [encode_key([3])]) == [record(3, 1)]


def test_many_keys_in_one_read_keep_their_order(store: OnlineStore) -> None:
    records = [record(i, 1_000 + i, x=float(i)) for i in range(1_234)]
    assert store.write("v", records) == 1_234
    wanted = [*range(1_300, 1_200, -1), *range(0, 1_234, 3), 5, 5, -1]
    result = store.read("v", [encode_key([i]) for i in wanted])
    assert result == [records[i] if 0 <= i < 1_234 else None for i in wanted]


def test_values_keep_their_json_types(store: OnlineStore) -> None:
    values = {
        "none": None,
        "nan": float("nan"),
        "np_nan": np.float64("nan"),
        "np_float32_nan": np.float32("nan"),
        "text": 'naïve "quoted" \n line',
        "big": 2**62,
        "negative": -3,
        "float": 0.1,
        "inf": float("inf"),
        "flag": True,
        "np_int": np.int64(7),
        "np_float": np.float32(0.5),
        "np_bool": np.bool_(False),
        "vector": np.array([1.5, np.nan]),
        "list": [1, None, "x"],
        "when": pd.Timestamp("2024-03-01 12:00", tz="Europe/Paris"),
        "naive_when": datetime(2024, 3, 1, 11),
        "day": date(2024, 3, 1),
        "missing_when": pd.NaT,
    }
    store.write("v", [OnlineRecord(encode_key([1]), 1, 1, values)])
    [stored] = store.read("v", [encode_key([1])])
    assert stored is not None
    assert stored.values == {
        "none": None,
        "nan": None,
        "np_nan": None,
        "np_float32_nan": None,
        "text": 'naïve "quoted" \n line',
        "big": 2**62,
        "negative": -3,
        "float": 0.1,
        "inf": math.inf,
        "flag": True,
        "np_int": 7,
        "np_float": 0.5,
        "np_bool": False,
        "vector": [1.5, None],
        "list": [1, None, "x"],
        "when": "2024-03-01T11:00:00+00:00",
        "naive_when": "2024-03-01T11:00:00+00:00",
        "day": "2024-03-01",
        "missing_when": None,
    }
    assert type(stored.values["np_int"]) is int


def test_times_may_be_numpy_integers(store: OnlineStore) -> None:
    ten, eleven = cast(int, np.int64(10)), cast(int, np.int64(11))
    store.write("v", [OnlineRecord(encode_key([1]), ten, eleven, {})])
    assert store.read("v", [encode_key([1])]) == [OnlineRecord(encode_key([1]), 10, 11, {})]


def test_readers_and_a_writer_at_once(store: OnlineStore) -> None:
    keys = [encode_key([i]) for i in range(20)]
    store.write("v", [OnlineRecord(key, 0, 0, {"version": 0}) for key in keys])
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for version in range(1, 150):
                batch = [OnlineRecord(key, version, 0, {"version": version}) for key in keys]
                store.write("v", batch, only_newer=True)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    entries = [("v", key) for key in keys]

    def read() -> None:
        try:
            seen = 0
            while not done.is_set() or seen < 20:
                one = keys[seen % 20 : seen % 20 + 1]
                for found in [*store.read("v", keys), *store.read("v", one), *store.read_entries(entries)]:
                    assert found is not None
                    assert found.values == {"version": found.event_time_us}
                seen += 1
            # once the writer is done, every reader (and its cache) sees the last write
            assert [found.event_time_us if found else None for found in store.read_entries(entries)] == [
                149
            ] * 20
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(4))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert [found.event_time_us if found else None for found in store.read("v", keys)] == [149] * 20


def test_read_entries_sees_every_write_and_hands_out_copies(store: OnlineStore) -> None:
    one, two = encode_key([1]), encode_key([2])
    entries = [("a", one), ("b", one), ("a", two), ("a", one)]
    store.write("a", [record(1, 10, x=1)])
    first = store.read_entries(entries)
    assert first == [record(1, 10, x=1), None, None, record(1, 10, x=1)]
    assert first[0] is not None
    first[0].values["x"] = 99  # the caller's copy: the store keeps its value
    assert store.read_entries(entries)[0] == record(1, 10, x=1)
    assert store.read_entries_shared(entries) == [record(1, 10, x=1), None, None, record(1, 10, x=1)]
    store.write("a", [record(1, 20, x=2), record(2, 5, y=3)])
    store.write("b", [record(1, 1, z=0)])
    assert store.read_entries(entries) == [
        record(1, 20, x=2),
        record(1, 1, z=0),
        record(2, 5, y=3),
        record(1, 20, x=2),
    ]
    assert store.write("a", [record(1, 15, x=0)], only_newer=True) == 0
    assert store.read_entries(entries)[0] == record(1, 20, x=2)
    store.clear("a")
    assert store.read_entries(entries) == [None, record(1, 1, z=0), None, None]
    assert store.read_entries([]) == []


def test_bad_records_are_refused_with_the_reason(store: OnlineStore) -> None:
    one: Any = 1
    with pytest.raises(
        InvalidInputError, match=r"key 1 must be a str: build it with encode_key\(key_values\)"
    ):
        store.write("v", [OnlineRecord(one, 1, 1, {})])
    with pytest.raises(InvalidInputError, match=r"online record \[1\] has times 1.5, 1: expected integer"):
        store.write("v", [OnlineRecord(encode_key([1]), one * 1.5, 1, {})])
    with pytest.raises(InvalidInputError, match=r"online record \[1\] has a value that is not JSON-able"):
        store.write("v", [OnlineRecord(encode_key([1]), 1, 1, {"x": object()})])
    with pytest.raises(
        InvalidInputError, match="view name 'a:b' is not valid: use a non-empty name without ':'"
    ):
        store.write("a:b", [record(1, 1)])
    with pytest.raises(InvalidInputError, match="view name '' is not valid"):
        store.clear("")
    assert store.write("v", []) == 0
    assert store.read("v", [encode_key([1])]) == [None]


# --- encode_key ----------------------------------------------------------------------------------------


def test_equal_keys_encode_alike() -> None:
    assert encode_key([1]) == encode_key([np.int64(1)]) == encode_key([1.0]) == encode_key([np.float32(1.0)])
    assert encode_key([1.5]) == "[1.5]"
    assert encode_key(["a", np.str_("b")]) == '["a","b"]'
    assert encode_key((1, "x")) == encode_key([1, "x"]) == '[1,"x"]'
    assert encode_key([True]) == "[true]"


def test_timestamp_keys_encode_as_utc() -> None:
    utc = encode_key([pd.Timestamp("2024-03-01 11:00", tz="UTC")])
    assert utc == '["2024-03-01T11:00:00+00:00"]'
    assert encode_key([pd.Timestamp("2024-03-01 11:00")]) == utc
    assert encode_key([datetime(2024, 3, 1, 11, tzinfo=UTC)]) == utc
    assert encode_key([np.datetime64("2024-03-01T11:00:00")]) == utc
    assert encode_key([pd.Timestamp("2024-03-01 12:00", tz="Europe/Paris")]) == utc
    assert encode_key([date(2024, 3, 1)]) == '["2024-03-01"]'


@pytest.mark.parametrize("null", [None, float("nan"), np.nan, pd.NaT, pd.NA, np.datetime64("NaT")])
def test_null_keys_are_refused(null: object) -> None:
    with pytest.raises(InvalidInputError, match=r"has a null value at position 1: null keys name no entity"):
        encode_key(["a", null])


def test_keys_that_are_not_key_values_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="entity key must be a list of key values, got str 'abc'"):
        encode_key("abc")
    with pytest.raises(InvalidInputError, match="entity key value inf is infinite"):
        encode_key([float("inf")])
    with pytest.raises(InvalidInputError, match=r"has type list: keys must be strings, integers"):
        encode_key([[1, 2]])


# --- SQLite --------------------------------------------------------------------------------------------


def test_sqlite_store_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "online.db"
    with SqliteOnlineStore(path) as store:
        store.write("v", [record(1, 10, x=1.5)])
    with SqliteOnlineStore(path) as store:
        assert store.read("v", [encode_key([1])]) == [record(1, 10, x=1.5)]
        assert store.write("v", [record(1, 9, x=0.0)], only_newer=True) == 0


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    with SqliteOnlineStore(tmp_path / "online.db") as store:
        store.write("v", [record(1, 10)])
    assert (tmp_path / "online.db").exists()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "online.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_sqlite_store_on_an_unusable_path_says_so(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(
        MlprodError, match=r"the online store .*dir\.db failed: .*is it a writable SQLite file"
    ):
        SqliteOnlineStore(tmp_path / "dir.db")


def test_sqlite_cached_reads_see_every_commit_of_any_connection_or_process(tmp_path: Path) -> None:
    path = tmp_path / "online.db"
    entries = [("v", encode_key([1])), ("v", encode_key([2]))]
    with SqliteOnlineStore(path) as store, SqliteOnlineStore(path) as other:
        store.write("v", [record(1, 10, x=1)])
        assert store.read_entries(entries) == [record(1, 10, x=1), None]
        statements: list[str] = []
        store._thread_connection().sqlite.set_trace_callback(statements.append)
        assert store.read_entries(entries) == [record(1, 10, x=1), None]
        assert statements == ["PRAGMA data_version"]  # a repeated read is served from the cache
        other.write("v", [record(1, 11, x=2)])  # another connection of this process
        assert store.read_entries(entries) == [record(1, 11, x=2), None]
        writer = threading.Thread(target=store.write, args=("v", [record(2, 3, y=1)]))
        writer.start()  # the same store on another thread: that thread's own connection
        writer.join()
        assert store.read_entries(entries) == [record(1, 11, x=2), record(2, 3, y=1)]
        script = (
            "import sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1])\n"
            'conn.execute("UPDATE online_features SET event_time_us = 12, created_time_us = 12, '
            "payload = '{\\\"x\\\":3}' WHERE key = '[1]'\")\n"
            "conn.commit()\n"
        )
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)  # another process
        assert store.read_entries(entries) == [record(1, 12, x=3), record(2, 3, y=1)]
        other.clear("v")
        assert store.read_entries(entries) == [None, None]


def test_sqlite_read_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online_store, "_CACHED_RECORDS", 3)
    with SqliteOnlineStore(tmp_path / "online.db") as store:
        store.write("v", [record(i, i, n=i) for i in range(6)])
        for i in [0, 1, 2, 3, 0, 4, 5, 1]:
            assert store.read_entries([("v", encode_key([i]))]) == [record(i, i, n=i)]
        pair = [("v", encode_key([5])), ("v", encode_key([2]))]
        assert store.read_entries(pair) == [record(5, 5, n=5), record(2, 2, n=2)]
        assert len(store._thread_connection().cache) <= 3


def test_sqlite_full_read_cache_forgets_the_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(online_store, "_CACHED_RECORDS", 4)
    with SqliteOnlineStore(tmp_path / "online.db") as store:
        store.write("v", [record(i, i, n=i) for i in range(8)])
        for i in range(8):
            store.read_entries([("v", encode_key([i]))])
        assert list(store._thread_connection().cache) == [("v", encode_key([i])) for i in range(4, 8)]


def test_large_payloads_are_decoded_each_time_small_ones_once() -> None:
    small, large = '{"x": 1}', json.dumps({"embedding": list(range(2000))})
    assert online_store._decoded(small) is online_store._decoded(small)
    assert online_store._decoded(large) is not online_store._decoded(large)
    assert online_store._decoded(large) == json.loads(large)


def test_closed_sqlite_store_refuses_use(tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    thread = threading.Thread(target=store.read, args=("v", [encode_key([1])]))
    thread.start()
    thread.join()
    store.close()
    with pytest.raises(MlprodError, match=r"online\.db is closed: open a new SqliteOnlineStore"):
        store.read("v", [encode_key([1])])


# --- Redis ---------------------------------------------------------------------------------------------


def test_redis_record_layout(redis_url: str) -> None:
    with RedisOnlineStore(redis_url, prefix="layout") as store:
        store.write("drivers", [record(1001, 10, 11, rate=0.5)])
    client = redis.Redis.from_url(redis_url)
    assert client.hgetall("layout:drivers:[1001]") == {b"e": b"10", b"c": b"11", b"v": b'{"rate":0.5}'}
    client.close()


def test_redis_reloads_a_flushed_script(redis_url: str) -> None:
    with RedisOnlineStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}") as store:
        assert store.write("v", [record(1, 10)], only_newer=True) == 1
        client = redis.Redis.from_url(redis_url)
        client.script_flush()
        client.close()
        assert store.write("v", [record(1, 11)], only_newer=True) == 1
        assert store.write("v", [record(1, 9)], only_newer=True) == 0


def test_unreachable_redis_is_a_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with RedisOnlineStore(url) as store:
        with pytest.raises(
            MlprodError, match=rf"Redis at {url} is unreachable: .*start the server or fix the URL"
        ):
            store.read("v", [encode_key([1])])
        with pytest.raises(MlprodError, match="is unreachable"):
            store.write("v", [record(1, 1)])
        with pytest.raises(MlprodError, match="is unreachable"):
            store.clear("v")


def test_redis_errors_hide_the_password() -> None:
    port = free_port()
    store = RedisOnlineStore(f"redis://user:secret@127.0.0.1:{port}/0")
    with pytest.raises(MlprodError) as raised:
        store.read("v", [encode_key([1]), encode_key([2])])
    assert f"Redis at redis://user:***@127.0.0.1:{port}/0 is unreachable" in str(raised.value)
    assert "secret" not in str(raised.value)
    assert "secret" not in repr(store)


def test_redis_url_must_be_a_redis_url() -> None:
    with pytest.raises(InvalidInputError, match="Redis URL 'http://localhost' is not valid"):
        RedisOnlineStore("http://localhost")
