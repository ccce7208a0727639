import dataclasses
import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest

from mlprod.errors import InvalidInputError, MlprodError
from mlprod.evaluate import load_probe
from mlprod.evaluate.serving_cost import ServingCost, measure_serving_cost, probe_memory_mb
from mlprod.models import EstimatorSpec, ModelVersion, Registry, train_classifier
from mlprod.workspace import Workspace
from tests.conftest import make_frame


def request_rows(frame: pd.DataFrame, n: int = 50) -> list[dict[str, Any]]:
    return [{"x": float(x), "c": str(c)} for x, c in zip(frame["x"][:n], frame["c"][:n], strict=True)]


def register_lightgbm(workspace: Workspace, name: str, **params: Any) -> ModelVersion:
    frame = make_frame(5000, seed=1)
    trained = train_classifier(
        frame, label="y", numeric=["x"], categorical=["c"], estimator=EstimatorSpec("lightgbm", params)
    )
    return Registry(workspace).register(name, trained.model, signature=trained.signature)


def test_serving_cost_is_measured_through_the_serving_path(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    cost = measure_serving_cost(
        workspace,
        registered,
        request_rows(frame),
        requests=200,
        warmup=10,
        batch_rows=2000,
        probe_memory=False,
    )
    assert cost.runtime == "lightgbm-text"
    assert 0 < cost.latency_p50_ms <= cost.latency_p99_ms
    assert cost.throughput_rows_per_s > 0
    artifact = workspace.artifacts.path_of(registered.artifact_sha256)
    assert cost.artifact_mb == artifact.stat().st_size / 2**20
    assert cost.cpu_seconds_per_million > 0
    assert cost.cost_per_million == cost.cpu_seconds_per_million / 3600 * 0.05
    assert cost.cpu_hour_price == 0.05
    assert math.isnan(cost.memory_mb)


def test_cost_is_cpu_time_priced_per_cpu_hour(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    rows = request_rows(frame)
    cost = measure_serving_cost(
        workspace, "toy@champion", rows, requests=20, batch_rows=100, cpu_hour_price=3.6, probe_memory=False
    )
    assert cost.cost_per_million == cost.cpu_seconds_per_million / 3600 * 3.6


def test_memory_probe_charges_a_bigger_model_more(workspace: Workspace) -> None:
    small = register_lightgbm(workspace, "small", n_estimators=5)
    big = register_lightgbm(workspace, "big", n_estimators=300, num_leaves=63, min_child_samples=5)
    rows = request_rows(make_frame(100, seed=2))
    # Each probe is a fresh interpreter importing every model library (seconds): run two at once.
    with ThreadPoolExecutor(1) as pool:
        small_mb = pool.submit(probe_memory_mb, workspace, small, rows=5000)
        cost = measure_serving_cost(workspace, big, rows, requests=50, warmup=5, batch_rows=5000)
        assert math.isfinite(small_mb.result())
    assert small_mb.result() > 0
    assert math.isfinite(cost.memory_mb)
    assert cost.memory_mb > small_mb.result()
    assert cost.artifact_mb > workspace.artifacts.path_of(small.artifact_sha256).stat().st_size / 2**20
    assert ServingCost.from_dict(json.loads(json.dumps(cost.to_dict()))) == cost


def test_a_failing_memory_probe_says_why(workspace: Workspace, registered: ModelVersion) -> None:
    missing = dataclasses.replace(registered, version=99)
    with pytest.raises(MlprodError, match=r"memory probe of toy/99 .*exit code 2.*has no version 99"):
        probe_memory_mb(workspace, missing, rows=10)


def test_load_probe_prints_one_json_line(
    workspace: Workspace, registered: ModelVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    code = load_probe.main(["--workspace", str(workspace.root), "--ref", "toy/1", "--rows", "100"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"baseline_mb", "peak_mb", "loaded_mb"}
    assert figures["peak_mb"] >= figures["baseline_mb"] > 0
    assert figures["loaded_mb"] == pytest.approx(figures["peak_mb"] - figures["baseline_mb"])


def test_load_probe_reports_errors_on_stderr(
    workspace: Workspace, registered: ModelVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_probe.main(["--workspace", str(workspace.root), "--ref", "toy/1", "--rows", "0"]) == 2
    assert "--rows must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rows": []}, "non-empty list of request rows"),
        ({"rows": ["x"]}, "request row 0: expected an object"),
        ({"requests": 9}, "requests must be at least 10"),
        ({"cpu_hour_price": -0.01}, "cpu_hour_price must be a finite price >= 0"),
        ({"cpu_hour_price": math.nan}, "cpu_hour_price must be a finite price >= 0"),
        ({"warmup": -1}, "warmup must be 0 or more"),
        ({"batch_rows": 0}, "batch_rows must be at least 1"),
        ({"rows": [{"x": 1.0}]}, "missing field 'c'"),
        ({"rows": [{"x": 1.0, "c": "zz"}]}, "'zz' is not an allowed category"),
    ],
)
def test_bad_arguments_are_refused(
    workspace: Workspace, registered: ModelVersion, overrides: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"rows": [{"x": 0.5, "c": "a"}], "requests": 10, "probe_memory": False}
    with pytest.raises(InvalidInputError, match=message):
        measure_serving_cost(workspace, registered, **{**arguments, **overrides})


def test_serving_cost_records_must_be_complete() -> None:
    with pytest.raises(InvalidInputError, match="lacks"):
        ServingCost.from_dict({"runtime": "lightgbm-text"})
