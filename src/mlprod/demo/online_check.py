"""The demo's online store check: materialize the feature set, then compare lookups with the offline join.

Training/serving skew starts where the online value of a feature differs from the value the training
frame would hold at the same time. Here both come from the same definitions: the features are
materialized as of the last July departure, and for a sample of flights each online lookup is
compared with a point-in-time join at that time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.features import FeatureSet, training_frame
from mlprod.features.catalog import open_online_store
from mlprod.features.online import FeatureLookup, materialize
from mlprod.workspace import Workspace

KEYS = ("origin", "dest", "carrier", "tailnum")
COMPARED = 300
TIMED_LOOKUPS = 2000


@dataclass(frozen=True)
class OnlineCheck:
    at: datetime
    keys_materialized: int
    compared: int
    mismatches: int
    lookup_p50_us: float
    lookup_p99_us: float


def check_online_store(
    workspace: Workspace, feature_set: FeatureSet, flights: pa.Table, *, seed: int
) -> OnlineCheck:
    """Materialize ``feature_set`` as of the last departure in ``flights``; compare a sample of lookups."""
    at = pc.max(flights.column("time_hour")).as_py()
    store = open_online_store(workspace)
    try:
        written = materialize(store, feature_set, at=at, workspace=workspace)
        lookup = FeatureLookup(store, feature_set)
        sample = _sample(flights, seed)
        entity_rows = sample.append_column(
            "event_time", pa.array([at] * sample.num_rows, pa.timestamp("us", "UTC"))
        )
        offline = training_frame(
            entity_rows, feature_set, event_time="event_time", workspace=workspace
        ).to_pylist()
        mismatches = 0
        for row in offline:
            online = lookup.get({k: row[k] for k in KEYS}, at=at)
            mismatches += any(not _same(online.values[n], row[n]) for n in feature_set.feature_names)
        keys = offline[0] if offline else {}
        latencies = []
        for _ in range(TIMED_LOOKUPS):
            started = time.perf_counter_ns()
            lookup.get({k: keys[k] for k in KEYS}, at=at)
            latencies.append((time.perf_counter_ns() - started) / 1000)
    finally:
        store.close()
    return OnlineCheck(
        at=at,
        keys_materialized=sum(written.values()),
        compared=len(offline),
        mismatches=mismatches,
        lookup_p50_us=float(np.percentile(latencies, 50)),
        lookup_p99_us=float(np.percentile(latencies, 99)),
    )


def _sample(flights: pa.Table, seed: int) -> pa.Table:
    keys = flights.select(list(KEYS))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(keys.num_rows, size=min(COMPARED, keys.num_rows), replace=False)
    return keys.take(pa.array(np.sort(chosen)))


def _same(online: Any, offline: Any) -> bool:
    if online is None or offline is None:
        return (online is None or _nan(online)) and (offline is None or _nan(offline))
    if isinstance(online, float) or isinstance(offline, float):
        return math.isclose(float(online), float(offline), rel_tol=1e-12, abs_tol=1e-12)
    return bool(online == offline)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
