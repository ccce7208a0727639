"""Summaries of the prediction log per model version: volume, time span, scores and latency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class PredictionSummary:
    model: str
    version: int
    predictions: int
    requests: int
    first: datetime
    last: datetime
    mean_prediction: float
    latency_p50_ms: float
    latency_p99_ms: float


def summarize_predictions(log_dir: Path, *, model: str | None = None) -> list[PredictionSummary]:
    """One summary per (model, version) found in the prediction log, optionally of one model."""
    from mlprod.serve.prediction_log import read_prediction_log  # here: mlprod.serve loads the web app

    log = read_prediction_log(log_dir)
    query = """
        WITH requests AS (
            SELECT model, version, request_id, any_value(latency_ms) AS latency_ms
            FROM log GROUP BY ALL
        ), latency AS (
            SELECT model, version, count(*) AS requests,
                   quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.99) AS p99
            FROM requests GROUP BY ALL
        )
        SELECT l.model, l.version, count(*) AS predictions, any_value(r.requests),
               min(l.time), max(l.time), avg(l.prediction), any_value(r.p50), any_value(r.p99)
        FROM log l JOIN latency r USING (model, version)
        WHERE $model IS NULL OR l.model = $model
        GROUP BY l.model, l.version ORDER BY l.model, l.version
    """
    with duckdb.connect() as conn:
        conn.register("log", log)
        rows = conn.execute(query, {"model": model}).fetchall()
    return [PredictionSummary(*row) for row in rows]
