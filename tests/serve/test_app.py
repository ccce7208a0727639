"""The HTTP server, exercised over real HTTP on a loopback port."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest

from mlprod.models import ModelVersion, Registry
from mlprod.serve import BackgroundServer, create_app, read_prediction_log
from mlprod.workspace import Workspace
from tests.conftest import train_toy

ROW = {"x": 0.3, "c": "a"}


@pytest.fixture
def server(workspace: Workspace, registered: ModelVersion) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(workspace, alias_refresh_seconds=0.2)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_health_endpoints(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_model_listing(client: httpx.Client) -> None:
    assert client.get("/v1/models").json() == {
        "models": [{"name": "toy", "latest_version": 1, "aliases": {"champion": 1}}]
    }


def test_predict_rows_matches_in_process_prediction(workspace: Workspace, client: httpx.Client) -> None:
    response = client.post("/v1/models/toy@champion/predict", json={"rows": [ROW, {"x": -2.0, "c": "b"}]})
    assert response.status_code == 200
    body = response.json()
    expected = Registry(workspace).load("toy/1").predict_rows([ROW, {"x": -2.0, "c": "b"}]).tolist()
    assert (body["model"], body["version"]) == ("toy", 1)
    assert body["predictions"] == pytest.approx(expected, abs=1e-12)
    assert body["predictions"][0] > body["predictions"][1]
    assert body["request_id"]


def test_predict_columns_and_explicit_version(client: httpx.Client) -> None:
    by_rows = client.post("/v1/models/toy/predict", json={"rows": [ROW]}).json()["predictions"]
    by_columns = client.post(
        "/v1/models/toy/versions/1/predict", json={"columns": {"x": [0.3], "c": ["a"]}}
    ).json()["predictions"]
    assert by_rows == by_columns


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/models/nope/predict", {"rows": [ROW]}, 404, "model 'nope' is not registered"),
        ("/v1/models/toy@staging/predict", {"rows": [ROW]}, 404, "has no alias 'staging'"),
        ("/v1/models/toy/versions/7/predict", {"rows": [ROW]}, 404, "has no version 7"),
        ("/v1/models/toy/predict", {"rows": [{"x": 1}]}, 422, "row 0: missing field 'c'"),
        ("/v1/models/toy/predict", {"rows": [{"x": "1", "c": "a"}]}, 422, "expects a number, got '1'"),
        ("/v1/models/toy/predict", {"data": []}, 422, 'needs "rows"'),
        ("/v1/models/toy/predict", [1, 2], 422, "must be a JSON object"),
        ("/v1/models/..etc/predict", {"rows": [ROW]}, 422, "model name"),
        ("/v1/models/..%2F..%2Fetc/predict", {"rows": [ROW]}, 404, "no route POST"),
        ("/v1/models/toy/versions/x/predict", {"rows": [ROW]}, 422, "version must be a positive integer"),
    ],
)
def test_bad_requests_get_a_clear_json_error(
    client: httpx.Client, path: str, body: object, status: int, message: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_invalid_json_is_a_422(client: httpx.Client) -> None:
    response = client.post(
        "/v1/models/toy/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


def test_oversized_body_is_a_413(workspace: Workspace, registered: ModelVersion) -> None:
    workspace.config.serve.max_body_bytes = 1000
    with BackgroundServer(create_app(workspace)) as server:
        response = httpx.post(f"{server.url}/v1/models/toy/predict", json={"rows": [ROW] * 100})
    assert response.status_code == 413
    assert "larger than the limit of 1000 bytes" in response.json()["error"]["message"]


def test_alias_move_is_picked_up_without_restart(
    workspace: Workspace, client: httpx.Client, frame: pd.DataFrame
) -> None:
    assert client.post("/v1/models/toy@champion/predict", json={"rows": [ROW]}).json()["version"] == 1
    registry = Registry(workspace)
    trained = train_toy(frame, rounds=3)
    registry.register("toy", trained.model, signature=trained.signature)
    registry.set_alias("toy", "champion", 2)
    deadline = time.monotonic() + 5
    versions = set()
    while time.monotonic() < deadline and 2 not in versions:
        response = client.post("/v1/models/toy@champion/predict", json={"rows": [ROW]})
        assert response.status_code == 200  # no request fails during the switch
        versions.add(response.json()["version"])
    assert versions == {1, 2}


def test_every_prediction_is_logged_by_shutdown(workspace: Workspace, registered: ModelVersion) -> None:
    workspace.config.prediction_log.flush_interval_seconds = 60  # only the shutdown flush can write
    with BackgroundServer(create_app(workspace)) as server, httpx.Client(base_url=server.url) as c:
        for i in range(5):
            c.post("/v1/models/toy@champion/predict", json={"id": f"req-{i}", "rows": [ROW, ROW]})
    log = read_prediction_log(workspace.prediction_log_dir).to_pandas()
    assert len(log) == 10
    assert sorted(set(log["request_id"])) == [f"req-{i}" for i in range(5)]
    assert set(log["model"]) == {"toy"} and set(log["version"]) == {1}
    assert set(log["route"]) == {"direct"}  # an explicit alias bypasses routing plans
    assert log["inputs"].iloc[0] == '{"x": 0.3, "c": "a"}'
    assert (log["latency_ms"] > 0).all()


def test_columns_that_are_not_lists_are_a_422(client: httpx.Client) -> None:
    response = client.post("/v1/models/toy/predict", json={"columns": {"x": 1.0, "c": "a"}})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "column 'x' must be a list of values, got float"


def test_large_requests_are_answered_off_the_event_loop_identically(
    workspace: Workspace, client: httpx.Client
) -> None:
    rows = [{"x": i / 100, "c": "abc"[i % 3]} for i in range(500)]
    response = client.post("/v1/models/toy@champion/predict", json={"rows": rows})
    expected = Registry(workspace).load("toy/1").predict_rows(rows).tolist()
    assert response.json()["predictions"] == pytest.approx(expected, abs=1e-12)


def test_an_unexpected_failure_is_a_json_500(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlprod.models import LoadedModel

    def broken(self: LoadedModel, matrix: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(LoadedModel, "predict_matrix", broken)
    response = client.post("/v1/models/toy/predict", json={"rows": [ROW]})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal_error",
        "message": "internal error: RuntimeError; see the server log",
    }


def test_readiness_follows_the_database(workspace: Workspace, registered: ModelVersion, tmp_path) -> None:
    from mlprod.meta.database import connect

    with BackgroundServer(create_app(workspace)) as server:
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        good = workspace.engine
        (tmp_path / "gone").mkdir()
        workspace.engine = connect(f"sqlite:///{tmp_path / 'gone' / 'meta.db'}")
        (tmp_path / "gone" / "meta.db").unlink()
        (tmp_path / "gone").rmdir()
        workspace.engine.dispose()
        try:
            response = httpx.get(f"{server.url}/v2/health/ready")
        finally:
            workspace.engine = good
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert "metadata database unavailable" in response.json()["reason"]
