from pathlib import Path

import pytest

from mlprod.monitor import summarize_predictions
from mlprod.serve import PredictionLogWriter


def test_summary_per_model_version(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=3600)
    for i, latency in enumerate([1.0, 2.0, 3.0, 4.0]):
        writer.append(
            request_id=f"r{i}",
            model="a",
            version=1,
            route="a@champion",
            inputs=[{}, {}],
            predictions=[0.2, 0.4],
            latency_ms=latency,
        )
    writer.append(
        request_id="s", model="b", version=3, route="b", inputs=[{}], predictions=[0.9], latency_ms=7.0
    )
    writer.close()
    a, b = summarize_predictions(tmp_path)
    assert (a.model, a.version, a.predictions, a.requests) == ("a", 1, 8, 4)
    assert a.mean_prediction == pytest.approx(0.3)
    assert a.latency_p50_ms == pytest.approx(2.5)
    assert (b.model, b.version, b.predictions, b.requests, b.latency_p99_ms) == ("b", 3, 1, 1, 7.0)
    assert [s.model for s in summarize_predictions(tmp_path, model="b")] == ["b"]


def test_no_log_means_no_summaries(tmp_path: Path) -> None:
    assert summarize_predictions(tmp_path) == []
