"""One Feast ``get_historical_features`` run, executed by ``bench/feature_store.py`` inside Feast's own venv.

Run: ``bench/.venvs/feast/bin/python bench/feast_runner.py --store file|duckdb --ttl-seconds S
--features F.parquet --entities E.parquet --repo DIR --out OUT.parquet [--keys driver_id:int64,...]``

Writes a local feature repo in ``--repo`` (``feature_store.yaml`` with the chosen offline store, a registry
file), applies an Entity per ``--keys`` column (default: ``driver``, join key ``driver_id`` int64; a
string key is ``column:string``; several make a composite key) and a FeatureView ``driver_stats`` over a
FileSource on ``--features`` (``event_timestamp``, ``created_timestamp_column="created"``, float features
``f0`` … ``f9``, ``ttl=timedelta(seconds=S)``; 0 means "no TTL" to Feast), reads the entity rows into
pandas, then times ``get_historical_features(entity_df, features).to_df()`` alone. The result goes to
``--out`` as Parquet and one JSON line (seconds, rows, Feast version) is printed last on stdout.
This file imports only Feast and its dependencies: it never imports mlprod.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from datetime import timedelta
from pathlib import Path

FEATURES = [f"f{i}" for i in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["file", "duckdb"], required=True)
    parser.add_argument("--ttl-seconds", type=int, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--entities", type=Path, required=True)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--filter-by-created-timestamp", action="store_true")
    parser.add_argument(
        "--keys", default="driver_id:int64", help="join keys as column:int64|string, comma-separated"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import feast
    import pandas as pd
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    repo = args.repo
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        f"offline_store:\n  type: {args.store}\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(repo))
    kinds = {"int64": ValueType.INT64, "string": ValueType.STRING}
    keys = [spec.split(":") for spec in args.keys.split(",")]
    entities = [
        Entity(name="driver" if column == "driver_id" else column, join_keys=[column], value_type=kinds[kind])
        for column, kind in keys
    ]
    source = FileSource(
        name="driver_stats_source",
        path=str(args.features.resolve()),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    view = FeatureView(
        name="driver_stats",
        entities=entities,
        ttl=timedelta(seconds=args.ttl_seconds),
        schema=[Field(name=name, dtype=Float64) for name in FEATURES],
        source=source,
        online=False,
    )
    store.apply([*entities, view])

    entity_df = pd.read_parquet(args.entities)
    refs = [f"driver_stats:{name}" for name in FEATURES]
    print(json.dumps({"retrieval_started": time.time()}), flush=True)
    started, cpu = time.perf_counter(), time.process_time()
    frame = store.get_historical_features(
        entity_df=entity_df, features=refs, filter_by_created_timestamp=args.filter_by_created_timestamp
    ).to_df()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    frame.to_parquet(args.out, index=False)
    print(
        json.dumps(
            {"seconds": seconds, "cpu_seconds": cpu, "rows": len(frame), "feast_version": feast.__version__}
        )
    )


if __name__ == "__main__":
    main()
