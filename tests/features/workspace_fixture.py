"""A workspace with versioned tables and a feature definitions file, for the models and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mlprod.data import TableStore
from mlprod.workspace import Workspace

DEFINITIONS = """
from mlprod.features import Aggregation, AggregationView, Entity, FeatureSet, FeatureView, TableSource

shop = Entity("shop", ["shop"])
signals = FeatureView("signals", shop, TableSource("signals"), {"signal": "value"}, timestamp="ts", ttl="2d")
visits = AggregationView(
    "visits", shop, TableSource("signals"), timestamp="ts",
    aggregations=[Aggregation("count", None, "1d", name="visits_1d")],
)
shop_context = FeatureSet("shop-context", [signals, visits])
"""
START = pd.Timestamp("2026-01-01", tz="UTC")


def prepare(workspace: Workspace) -> None:
    """Tables ``orders`` (label ``bought``) and ``signals`` (a value per shop and hour that predicts it),
    and ``features.py`` named in ``mlprod.toml``."""
    rng = np.random.default_rng(3)
    hours = 24 * 30
    signals = pd.DataFrame(
        {
            "shop": np.repeat(["a", "b", "c", "d"], hours),
            "ts": np.tile(START + pd.to_timedelta(np.arange(hours), unit="h"), 4),
            "value": rng.normal(size=4 * hours),
        }
    )
    n = 4000
    orders = pd.DataFrame(
        {
            "order_id": np.arange(n),
            "shop": rng.choice(["a", "b", "c", "d", "e"], n),
            "ordered_at": START + pd.to_timedelta(rng.integers(3600, hours * 3600, n), unit="s"),
            "amount": rng.gamma(2.0, 10.0, n),
        }
    )
    latest = signals.set_index(["shop", "ts"])["value"]
    hour = orders["ordered_at"].dt.floor("h")
    known = [latest.get((s, h), 0.0) for s, h in zip(orders["shop"], hour, strict=True)]
    orders["bought"] = (np.asarray(known) + rng.normal(scale=0.5, size=n) > 0).astype(int)
    tables = TableStore(workspace)
    tables.create("signals", key=["shop", "ts"], data=pa.Table.from_pandas(signals, preserve_index=False))
    tables.create("orders", key=["order_id"], data=pa.Table.from_pandas(orders, preserve_index=False))
    (workspace.root / "features.py").write_text(DEFINITIONS, encoding="utf-8")
    workspace.set_config("features", "module", "features.py")


def write_entity_rows(path: Path) -> pd.DataFrame:
    rows = pd.DataFrame({"shop": ["a", "e", "b"], "event_time": [START + pd.Timedelta(hours=5)] * 3})
    rows.to_parquet(path)
    return rows
