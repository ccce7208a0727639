"""Counting one predict request in the serving metrics, the same way for every protocol."""

from __future__ import annotations

import time

from mlprod.errors import MlprodError
from mlprod.serve.http_errors import status_for
from mlprod.serve.metrics import ServingMetrics
from mlprod.serve.service import Prediction


def count_failure(metrics: ServingMetrics, target: str, error: Exception, started: float) -> None:
    """Count a request that failed, under the status it will be answered with (500 for a bug)."""
    status = status_for(error)[0] if isinstance(error, MlprodError) else 500
    metrics.observe(
        model=target.split("@", 1)[0].split("/", 1)[0], version=None, route="",
        status=status, seconds=time.perf_counter() - started,
    )  # fmt: skip


def count_answer(metrics: ServingMetrics, answer: Prediction, started: float) -> None:
    """Count an answered request and the rows it predicted."""
    metrics.observe(
        model=answer.model, version=answer.version, route=answer.route, status=200,
        seconds=time.perf_counter() - started,
    )  # fmt: skip
    metrics.observe_prediction_rows(answer.model, answer.version, len(answer.predictions))
