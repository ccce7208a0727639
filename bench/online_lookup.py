"""Online feature lookup latency: 10 features of one key, in-process, SQLite (and Redis when present).

Run: ``.venv/bin/python bench/online_lookup.py [--keys 100000] [--lookups 20000]``.

Materializes one view of 10 float features for ``--keys`` entities into the SQLite online store
(and into a throw-away ``redis-server`` if the binary is installed), then times ``FeatureLookup.get``
for random keys. Side by side in the same run: the store's raw key read (the floor) and the ratio of
the full lookup to it. Goal: p99 under 1 ms on SQLite.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlprod.features import Entity, FeatureView
from mlprod.features.online import FeatureLookup, materialize
from mlprod.features.online_store import OnlineStore, RedisOnlineStore, SqliteOnlineStore, encode_key

GOAL_P99_MS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    rows = pd.DataFrame(
        {
            "driver_id": np.arange(args.keys),
            "ts": start + pd.to_timedelta(rng.integers(0, 86400, args.keys), "s"),
        }
    )
    for i in range(10):
        rows[f"f{i}"] = rng.random(args.keys)
    view = FeatureView("driver_stats", Entity("driver", ["driver_id"]), rows, [f"f{i}" for i in range(10)],
                       timestamp="ts", ttl="7d")  # fmt: skip
    at = (start + timedelta(days=1)).to_pydatetime()
    keys = rng.integers(0, args.keys, args.lookups)
    print(f"{args.keys:,} keys x 10 float features; {args.lookups:,} single-key lookups in-process\n")
    print(f"{'store':<8} {'what':<22} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9}  {'p99 / raw p99':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, Callable[[], OnlineStore]]] = [
            ("sqlite", lambda: SqliteOnlineStore(Path(tmp) / "online.sqlite"))
        ]
        redis = _start_redis(Path(tmp)) if shutil.which("redis-server") else None
        if redis is not None:
            stores.append(("redis", lambda: RedisOnlineStore(redis[1])))
        try:
            for name, open_store in stores:
                with open_store() as store:
                    _measure(name, store, view, keys, at)
        finally:
            if redis is not None:
                redis[0].terminate()
                redis[0].wait()


def _measure(name: str, store: OnlineStore, view: FeatureView, keys: np.ndarray, at: datetime) -> None:
    started = time.perf_counter()
    materialize(store, [view], at=at)
    seconds = time.perf_counter() - started
    lookup = FeatureLookup(store, [view])
    assert lookup.get({"driver_id": int(keys[0])}, at=at).found
    raw = _times(lambda k: store.read("driver_stats", [encode_key([k])]), keys)
    full = _times(lambda k: lookup.get({"driver_id": k}, at=at), keys)
    for what, samples in (("raw key read", raw), ("FeatureLookup.get", full)):
        p50, p99, p999 = np.percentile(samples, [50, 99, 99.9])
        ratio = p99 / np.percentile(raw, 99)
        print(f"{name:<8} {what:<22} {p50:>8.1f} {p99:>8.1f} {p999:>9.1f}  {ratio:>13.2f}")
    p99_ms = np.percentile(full, 99) / 1000
    verdict = "meets" if p99_ms < GOAL_P99_MS else "MISSES"
    print(f"{name:<8} materialized {len(view.feature_names)} features in {seconds:.2f} s; "
          f"lookup p99 {p99_ms:.3f} ms {verdict} the {GOAL_P99_MS:.0f} ms goal")  # fmt: skip


def _times(action: Callable[[int], object], keys: np.ndarray) -> np.ndarray:
    for key in keys[:1000]:  # warm up
        action(int(key))
    samples = np.empty(len(keys))
    for i, key in enumerate(keys):
        started = time.perf_counter_ns()
        action(int(key))
        samples[i] = (time.perf_counter_ns() - started) / 1000
    return samples


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.terminate()
    return None


if __name__ == "__main__":
    main()
