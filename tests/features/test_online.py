"""Online features: materialize, push and lookup, and training/serving consistency on both backends."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import mlprod.features.online as online
from mlprod.errors import InvalidInputError
from mlprod.features import Aggregation, AggregationView, Entity, FeatureSet, FeatureView, training_frame
from mlprod.features.online import FeatureLookup, materialize, online_features, push
from mlprod.features.online_store import OnlineStore, RedisOnlineStore, SqliteOnlineStore

DRIVER = Entity("driver", ["driver_id"])
ROUTE = Entity("route", ["origin", "dest"])
START = pd.Timestamp("2026-03-01", tz="UTC")


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        opened: OnlineStore = SqliteOnlineStore(tmp_path / "online.db")
    else:
        opened = RedisOnlineStore(request.getfixturevalue("redis_url"), prefix=f"t{uuid.uuid4().hex[:8]}")
    with opened:
        yield opened


def random_features(seed: int) -> FeatureSet:
    """Views with late rows, ties, nulls, a TTL, a static view, composite keys and windows."""
    rng = np.random.default_rng(seed)
    n = 3000
    times = START + pd.to_timedelta(rng.integers(0, 7 * 24 * 60, n), unit="min")
    lag = pd.to_timedelta(np.where(rng.random(n) < 0.1, rng.integers(60, 3 * 24 * 60, n), 0), unit="min")
    stats = pd.DataFrame(
        {
            "driver_id": rng.integers(0, 60, n),
            "ts": times,
            "created": times + lag,
            "rate": np.where(rng.random(n) < 0.05, np.nan, rng.random(n)),
            "city": rng.choice(["paris", "lyon", None], n),
        }
    )
    trips = pd.DataFrame(
        {
            "origin": rng.choice(["A", "B", "C"], n),
            "dest": rng.choice(["X", "Y"], n),
            "ended": times,
            "fare": rng.gamma(2.0, 10.0, n),
        }
    )
    cars = pd.DataFrame({"driver_id": np.arange(0, 50), "seats": rng.integers(2, 8, 50)})
    return FeatureSet(
        "consistency",
        [
            FeatureView("stats", DRIVER, stats, ["rate", "city"], timestamp="ts", created="created",
                        ttl="1d"),
            FeatureView("cars", DRIVER, cars, ["seats"], timestamp=None),
            AggregationView(
                "fares", ROUTE, trips, timestamp="ended",
                aggregations=[Aggregation("mean", "fare", "6h"), Aggregation("count", None, "1d"),
                              Aggregation("max", "fare", "2d")],
            ),
        ],
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_lookups_equal_the_offline_join_at_the_same_time(store: OnlineStore, seed: int) -> None:
    features = random_features(seed)
    at = (START + pd.Timedelta(days=5, minutes=17 * seed)).to_pydatetime()
    materialize(store, features, at=at)
    keys = pd.DataFrame(
        [(d, o, t) for d in range(-2, 64) for o, t in (("A", "X"), ("C", "Y"), ("Z", "X"))],
        columns=["driver_id", "origin", "dest"],
    )
    offline = training_frame(keys.assign(event_time=at), features).to_pylist()
    lookup = FeatureLookup(store, features)
    found = 0
    for row in offline:
        online = lookup.get({k: row[k] for k in ("driver_id", "origin", "dest")}, at=at)
        for name in features.feature_names:
            assert same(online.values[name], row[name]), (row, name, online)
        found += online.found
    assert 0 < found < len(offline)  # some keys have every view, others miss one (unknown or expired)


def same(online: object, offline: object) -> bool:
    if offline is None or (isinstance(offline, float) and math.isnan(offline)):
        return online is None
    if isinstance(offline, float):
        return isinstance(online, int | float) and math.isclose(online, offline, rel_tol=1e-12)
    return online == offline


def test_an_unknown_key_gives_nulls_and_a_flag_not_an_exception(store: OnlineStore) -> None:
    features = random_features(0)
    materialize(store, features, at=(START + pd.Timedelta(days=3)).to_pydatetime())
    vector = online_features(store, features, {"driver_id": 999, "origin": "Q", "dest": "X"})
    assert set(vector.missing) == {"stats", "cars", "fares"} and not vector.found
    assert vector.values.pop("rows_count_1d") == 0  # no rows in the window, as offline
    assert all(value is None for value in vector.values.values())
    nan_key = online_features(store, features, {"driver_id": float("nan"), "origin": "A", "dest": "X"})
    assert "stats" in nan_key.missing


def test_a_lookup_missing_a_key_column_is_refused(store: OnlineStore) -> None:
    with pytest.raises(InvalidInputError, match="lookup of view 'fares' needs key 'dest'"):
        online_features(store, random_features(0), {"driver_id": 1, "origin": "A"})


def test_values_past_the_ttl_read_as_missing(store: OnlineStore) -> None:
    rows = pd.DataFrame({"driver_id": [1], "ts": [START], "rate": [0.5]})
    view = FeatureView("stats", DRIVER, rows, ["rate"], timestamp="ts", ttl="1h")
    materialize(store, [view], at=START.to_pydatetime())
    fresh = online_features(
        store, [view], {"driver_id": 1}, at=(START + timedelta(minutes=60)).to_pydatetime()
    )
    stale = online_features(
        store, [view], {"driver_id": 1}, at=(START + timedelta(minutes=61)).to_pydatetime()
    )
    assert fresh.values == {"rate": 0.5} and fresh.found
    assert stale.values == {"rate": None} and stale.missing == ("stats",)


def test_push_moves_a_key_forward_only(store: OnlineStore) -> None:
    rows = pd.DataFrame(
        {"driver_id": [1, 2], "ts": [START, START], "created": [START, START], "rate": [0.1, 0.2]}
    )
    view = FeatureView("stats", DRIVER, rows, ["rate"], timestamp="ts", created="created")
    materialize(store, [view], at=(START + timedelta(hours=1)).to_pydatetime())
    later, earlier = START + timedelta(minutes=5), START - timedelta(minutes=5)
    update = pd.DataFrame(
        {"driver_id": [1, 2, None], "ts": [later, earlier, later], "created": [later, later, later],
         "rate": [0.9, 0.8, 0.7]}
    )  # fmt: skip
    assert push(store, view, update) == 1  # driver 2's row is older; the null key names nobody
    at = (START + timedelta(hours=1)).to_pydatetime()
    assert online_features(store, [view], {"driver_id": 1}, at=at).values == {"rate": 0.9}
    assert online_features(store, [view], {"driver_id": 2}, at=at).values == {"rate": 0.2}
    materialize(store, [view], at=at)  # an older materialization never moves a key back
    assert online_features(store, [view], {"driver_id": 1}, at=at).values == {"rate": 0.9}


def test_a_lookup_serving_many_requests_sees_each_push_and_keeps_key_types_apart(
    store: OnlineStore,
) -> None:
    rows = pd.DataFrame({"driver_id": [1], "ts": [START], "created": [START], "rate": [0.1]})
    view = FeatureView("stats", DRIVER, rows, ["rate"], timestamp="ts", created="created")
    materialize(store, [view], at=(START + timedelta(hours=1)).to_pydatetime())
    lookup = FeatureLookup(store, [view])
    for _ in range(3):  # the same entity again and again, as a server sees it
        assert lookup.get({"driver_id": 1}).values == {"rate": 0.1}
    assert lookup.get({"driver_id": 1.0}).values == {"rate": 0.1}  # 1.0 names the same entity
    assert lookup.get({"driver_id": True}).missing == ("stats",)  # True does not (it encodes as true)
    assert lookup.get({"driver_id": None}).missing == ("stats",)
    later = START + timedelta(minutes=5)
    push(store, view, pd.DataFrame({"driver_id": [1], "ts": [later], "created": [later], "rate": [0.7]}))
    assert lookup.get({"driver_id": 1}).values == {"rate": 0.7}
    assert lookup.get({"driver_id": 1.0}).values == {"rate": 0.7}
    other = FeatureLookup(store, [view])
    store.clear("stats")
    assert lookup.get({"driver_id": 1}).missing == other.get({"driver_id": 1}).missing == ("stats",)
    with pytest.raises(InvalidInputError, match="lookup of view 'stats' needs key 'driver_id'"):
        lookup.get({"driver": 1})


def test_a_lookup_remembers_only_plain_keys_and_a_bounded_number(
    store: OnlineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN keys (each one a new object) and datetimes (equal across a DST fold, encoded apart) are not
    remembered; past the bound the remembered keys start over."""
    monkeypatch.setattr(online, "_REMEMBERED_ENTITIES", 4)
    rows = pd.DataFrame({"driver_id": [1], "ts": [START], "created": [START], "rate": [0.1]})
    view = FeatureView("stats", DRIVER, rows, ["rate"], timestamp="ts", created="created")
    materialize(store, [view], at=(START + timedelta(hours=1)).to_pydatetime())
    lookup = FeatureLookup(store, [view])
    for _ in range(100):
        assert lookup.get({"driver_id": float("nan")}).missing == ("stats",)
    lookup.get({"driver_id": START.to_pydatetime()})
    assert len(lookup._entries) == 0
    for driver in range(10):
        lookup.get({"driver_id": driver})
        assert len(lookup._entries) <= 4
    assert lookup.get({"driver_id": 1}).values == {"rate": 0.1}


def test_push_refuses_what_it_cannot_apply(store: OnlineStore) -> None:
    features = random_features(0)
    stats, _, fares = (view for view, _ in features.selection().values())
    with pytest.raises(InvalidInputError, match="'fares' is an aggregation view"):
        push(store, fares, pd.DataFrame())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="lack column\\(s\\) \\['city'\\]"):
        push(store, stats, pd.DataFrame({"driver_id": [1], "ts": [START], "created": [START], "rate": [1.0]}))  # type: ignore[arg-type]
    naive = pd.DataFrame(
        {"driver_id": [1], "ts": [START.tz_localize(None)], "created": [START], "rate": [1.0], "city": ["x"]}
    )
    with pytest.raises(InvalidInputError, match="must hold time-zone-aware times"):
        push(store, stats, naive)  # type: ignore[arg-type]


def test_materialize_refuses_a_naive_time(store: OnlineStore) -> None:
    with pytest.raises(InvalidInputError, match="has no time zone"):
        materialize(store, random_features(0), at=START.tz_localize(None).to_pydatetime())


def test_materialize_reads_a_parquet_source(store: OnlineStore, tmp_path: Path) -> None:
    path = tmp_path / "stats.parquet"
    pa.Table.from_pandas(
        pd.DataFrame({"driver_id": [7], "ts": [START], "rate": [0.25]})
    ).to_pandas().to_parquet(path)
    view = FeatureView("stats", DRIVER, str(path), ["rate"], timestamp="ts")
    assert materialize(store, [view], at=(START + timedelta(hours=1)).to_pydatetime()) == {"stats": 1}
    assert online_features(store, [view], {"driver_id": 7}).values == {"rate": 0.25}
