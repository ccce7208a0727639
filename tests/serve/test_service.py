"""The prediction service over real HTTP: routing plans (canary, shadows) changed at runtime, entity-key
requests filled from the online store, micro-batching, alias moves under load, many models."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import numpy as np
import pandas as pd
import pytest

from mlprod.features.catalog import load_catalog, open_online_store
from mlprod.features.online import FeatureLookup, materialize
from mlprod.features.online_store import OnlineRecord, encode_key
from mlprod.models import ModelVersion, Registry, run_training
from mlprod.serve import (
    BackgroundServer,
    RoutePlan,
    RouteStore,
    ServeOptions,
    create_app,
    read_prediction_log,
)
from mlprod.workspace import Workspace
from tests.conftest import train_toy
from tests.features.workspace_fixture import START, prepare
from tests.models.test_runs_with_features import spec as shop_spec
from tests.serve.admin_client import admin_headers

ROW = {"x": 0.3, "c": "a"}
FAST = ServeOptions(refresh_seconds=0.2)
JSON = {"content-type": "application/json"}


@pytest.fixture
def three_versions(workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame) -> Workspace:
    registry = Registry(workspace)
    for rounds in (3, 40):
        trained = train_toy(frame, rounds=rounds)
        registry.register("toy", trained.model, signature=trained.signature)
    return workspace


@pytest.fixture
def client(three_versions: Workspace) -> Iterator[httpx.Client]:
    admin = admin_headers(three_versions)  # before the server starts: it reads the tokens then
    with (
        BackgroundServer(create_app(three_versions, options=FAST)) as server,
        httpx.Client(base_url=server.url, timeout=20, headers=admin) as c,
    ):
        yield c  # predictions are open on loopback; the token is for the admin API


def predict(client: httpx.Client, target: str = "toy", **body: object) -> httpx.Response:
    return client.post(f"/v1/models/{target}/predict", json={"rows": [ROW], **body})


def test_without_a_plan_a_bare_name_serves_the_champion_not_the_latest(client: httpx.Client) -> None:
    answer = predict(client).json()  # versions 2 and 3 are registered but not promoted
    assert (answer["version"], answer["route"]) == (1, "champion")


def test_a_canary_set_at_runtime_takes_its_share_sticky_by_key(client: httpx.Client) -> None:
    plan = {"champion": "/1", "canary": "/2", "canary_percent": 20, "why": "try v2"}
    change = client.put("/v1/admin/routes/toy", json=plan)
    assert change.status_code == 200, change.text
    assert change.json()["revision"] == 1 and change.json()["why"] == "try v2"
    answers = [predict(client, route_key=f"k{i}").json() for i in range(300)]
    routes = {(a["route"], a["version"]) for a in answers}
    assert routes == {("champion", 1), ("canary", 2)}
    share = sum(a["route"] == "canary" for a in answers) / len(answers)
    assert 0.12 < share < 0.28
    again = [predict(client, route_key=f"k{i}").json()["route"] for i in range(50)]
    assert again == [a["route"] for a in answers[:50]]
    header = client.post("/v1/models/toy/predict", json={"rows": [ROW]}, headers={"X-Route-Key": "k7"})
    assert header.json()["route"] == answers[7]["route"]
    assert predict(client, "toy@champion").json()["route"] == "direct"  # explicit refs bypass the plan


def test_shadows_are_logged_and_never_returned(three_versions: Workspace) -> None:
    RouteStore(three_versions).set(RoutePlan("toy", champion="/1", shadows=("/3",)), why="watch v3")
    with (
        BackgroundServer(create_app(three_versions, options=FAST)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        answers = [predict(c, id=f"r{i}").json() for i in range(5)]
    assert {(a["version"], a["route"]) for a in answers} == {(1, "champion")}
    log = read_prediction_log(three_versions.prediction_log_dir).to_pandas()
    by_route = log.groupby("route")["version"].agg(set).to_dict()
    assert by_route == {"champion": {1}, "shadow": {3}}
    shadow = log[log["route"] == "shadow"].set_index("request_id")["prediction"]
    expected = Registry(three_versions).load("toy/3").predict_rows([ROW])[0]
    assert sorted(shadow.index) == [f"r{i}" for i in range(5)]
    assert np.allclose(shadow.to_numpy(), expected)


def test_a_plan_changed_elsewhere_is_picked_up_and_history_is_served(
    three_versions: Workspace, client: httpx.Client
) -> None:
    assert predict(client).json()["version"] == 1
    RouteStore(three_versions).set(RoutePlan("toy", champion="/2"), why="from the CLI")
    deadline = time.monotonic() + 10
    while predict(client).json()["version"] != 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert predict(client).json()["route"] == "champion"
    assert client.get("/v1/admin/routes").json()["routes"]["toy"]["champion"] == "/2"
    assert client.delete("/v1/admin/routes/toy", params={"why": "over"}).status_code == 200
    assert predict(client).json()["version"] == 1  # back to @champion alone
    history = client.get("/v1/admin/routes/toy/history").json()["changes"]
    assert [(c["revision"], c["why"]) for c in history] == [(1, "from the CLI"), (2, "over")]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/admin/routes/toy", {"canary": "/9", "canary_percent": 5}, 404, "no version 9"),
        ("/v1/admin/routes/toy", {"canary": "v2"}, 422, "must be '@ALIAS' or '/VERSION'"),
        ("/v1/admin/routes/toy", {"canary_percent": 5}, 422, "no canary target"),
        ("/v1/admin/routes/toy", {"why": 3}, 422, '"why" must be a string'),
        ("/v1/admin/routes/ghost", {}, 404, "ghost"),
        ("/v1/admin/routes/..", {}, 404, "no route"),
    ],
)
def test_bad_plans_are_4xx_and_change_nothing(
    client: httpx.Client, path: str, body: dict[str, object], status: int, message: str
) -> None:
    response = client.put(path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert client.get("/v1/admin/routes").json() == {"routes": {}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rows": [{"x": 0.3, "c": "a", "extra": 1}]}, "unknown field(s) ['extra']"),
        ({"rows": [{"x": 0.3}]}, "missing field 'c'"),
        ({"rows": [{"x": "high", "c": "a"}]}, "field 'x' expects a number"),
        ({"rows": {"x": 1}}, '"rows" must be a list'),
        ({"columns": {"x": [1, 2], "c": ["a"]}}, "different lengths"),
        ({"columns": {"x": 1, "c": "a"}}, "must be a list of values"),
        ({"rows": [ROW], "as_of": "yesterday"}, "not an ISO-8601 time"),
        ({"rows": [ROW], "id": {"a": 1}}, '"id" must be a string'),
        ({}, 'needs "rows"'),
    ],
)
def test_bad_requests_are_422_naming_the_field(
    client: httpx.Client, body: dict[str, object], message: str
) -> None:
    response = client.post("/v1/models/toy/predict", json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


def test_an_alias_move_under_load_drops_no_request(three_versions: Workspace, client: httpx.Client) -> None:
    assert predict(client, "toy@champion").json()["version"] == 1
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=20) as c:
            while not stop.is_set():
                r = c.post("/v1/models/toy@champion/predict", json={"rows": [ROW]})
                seen.append((r.status_code, r.json().get("version", -1)))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    Registry(three_versions).set_alias("toy", "champion", 3)
    deadline = time.monotonic() + 10
    while not any(v == 3 for _, v in seen[-20:]):
        assert time.monotonic() < deadline, "the alias move was not picked up"
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    assert {status for status, _ in seen} == {200}
    versions = [v for _, v in seen]
    assert versions[0] == 1 and versions[-1] == 3 and set(versions) == {1, 3}


def test_micro_batching_answers_each_request_with_its_own_rows(three_versions: Workspace) -> None:
    options = ServeOptions(micro_batch_max_wait_ms=20, micro_batch_max_rows=64)
    app = create_app(three_versions, options=options)
    rows = [{"x": float(x), "c": c} for x, c in zip(np.linspace(-2, 2, 40), "abc" * 14, strict=False)]
    with BackgroundServer(app) as server:

        def one(row: dict[str, object]) -> float:
            response = httpx.post(f"{server.url}/v1/models/toy/3/predict".replace("/3/", "/versions/3/"),
                                  json={"rows": [row]}, timeout=20)  # fmt: skip
            return float(response.json()["predictions"][0])

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            served = list(pool.map(one, rows))
        batcher = app.state.service.pool.peek("toy/3").extras["batcher"]
    expected = Registry(three_versions).load("toy/3").predict_rows(rows)
    assert np.allclose(served, expected, atol=1e-12)
    assert batcher.batches < len(rows)  # concurrent requests shared model calls


def test_a_thousand_models_are_served_from_one_process_within_the_budget(
    workspace: Workspace, frame: pd.DataFrame
) -> None:
    registry = Registry(workspace)
    trained = train_toy(frame, rounds=3)
    for i in range(1000):
        registry.register(f"m{i}", trained.model, signature=trained.signature)
    options = ServeOptions(memory_budget_bytes=100 * 1024, refresh_seconds=3600)
    admin = admin_headers(workspace)
    app = create_app(workspace, options=options)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        statuses = {
            c.post(f"/v1/models/m{i}/versions/1/predict", json={"rows": [ROW]}).status_code
            for i in range(1000)
        }
        loaded = c.get("/v1/admin/loaded", headers=admin).json()
    assert statuses == {200}
    assert loaded["loads"] == 1000 and loaded["evictions"] > 0
    assert loaded["memory_bytes"] <= 100 * 1024 and len(loaded["models"]) < 1000


@pytest.fixture
def shop_workspace(workspace: Workspace) -> Workspace:
    prepare(workspace)
    result = run_training(workspace, shop_spec())
    assert result.version is not None
    Registry(workspace).set_alias("shop-orders", "champion", result.version.version)
    with open_online_store(workspace) as store:
        materialize(store, load_catalog(workspace).feature_set("shop-context"), at=AT, workspace=workspace)
    return workspace


AT = START + timedelta(days=29, hours=12)


def test_entity_key_requests_are_filled_from_the_online_store(shop_workspace: Workspace) -> None:
    feature_set = load_catalog(shop_workspace).feature_set("shop-context")
    with open_online_store(shop_workspace) as store:
        known = FeatureLookup(store, feature_set).get({"shop": "b"}, at=AT).values
    body = {"rows": [{"amount": 12.5, "shop": "b"}, {"amount": 3.0, "shop": "zz"}], "as_of": AT.isoformat()}
    with (
        BackgroundServer(create_app(shop_workspace, options=FAST)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        answer = c.post("/v1/models/shop-orders@champion/predict", json=body).json()
        given = c.post(
            "/v1/models/shop-orders@champion/predict",
            json={"rows": [{"amount": 12.5, "signal": 9.0, "visits_1d": 1}]},
        ).json()
        no_key = c.post("/v1/models/shop-orders@champion/predict", json={"rows": [{"amount": 1.0}]})
    model = Registry(shop_workspace).load("shop-orders@champion")
    expected = model.predict_rows(
        [
            {"amount": 12.5, "signal": known["signal"], "visits_1d": known["visits_1d"]},
            {"amount": 3.0, "signal": None, "visits_1d": 0},
        ]
    )
    assert answer["predictions"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert answer["feature_misses"] == [[], ["signals", "visits"]]
    assert given["predictions"][0] == pytest.approx(
        model.predict_rows([{"amount": 12.5, "signal": 9.0, "visits_1d": 1}])[0]
    )
    assert "feature_misses" not in given
    assert no_key.status_code == 422 and "entity key(s) ['shop']" in no_key.json()["error"]["message"]
    log = read_prediction_log(shop_workspace.prediction_log_dir).to_pandas()
    assert '"signal"' in log["inputs"].iloc[0]  # the looked-up values are logged with the inputs


def test_a_serving_lookup_sees_a_write_made_elsewhere_at_once(shop_workspace: Workspace) -> None:
    body = {"rows": [{"amount": 12.5, "shop": "b"}], "as_of": AT.isoformat()}
    model = Registry(shop_workspace).load("shop-orders@champion")
    at_us = AT.value // 1000  # microseconds since the epoch: as fresh as the lookup time
    with (
        BackgroundServer(create_app(shop_workspace, options=FAST)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        before = [c.post("/v1/models/shop-orders@champion/predict", json=body).json() for _ in range(3)]
        with open_online_store(shop_workspace) as store:  # another connection, as a push from a job
            store.write("signals", [OnlineRecord(encode_key(["b"]), at_us, at_us, {"signal": 5.0})])
        after = c.post("/v1/models/shop-orders@champion/predict", json=body).json()
    assert before[0]["predictions"] == before[1]["predictions"] == before[2]["predictions"]
    fresh = model.predict_rows([{"amount": 12.5, "signal": 5.0, "visits_1d": after_visits(shop_workspace)}])
    assert after["predictions"] == pytest.approx(fresh.tolist(), abs=1e-12)
    assert "feature_misses" not in after


def after_visits(workspace: Workspace) -> int:
    feature_set = load_catalog(workspace).feature_set("shop-context")
    with open_online_store(workspace) as store:
        visits: int = FeatureLookup(store, feature_set).get({"shop": "b"}, at=AT).values["visits_1d"]
    return visits


def test_metrics_count_requests_errors_and_loaded_models(client: httpx.Client) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for _ in range(3):
        assert predict(client, "toy@champion").status_code == 200
    assert predict(client, "ghost").status_code == 404
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    ok = (("model", "toy"), ("protocol", "native"), ("route", "direct"), ("status", "200"), ("version", "1"))
    assert samples[("mlprod_requests_total", ok)] == 3
    latency = (("model", "toy"), ("protocol", "native"), ("route", "direct"), ("version", "1"))
    assert samples[("mlprod_request_latency_seconds_count", latency)] == 3
    missing = (("code", "4xx"), ("model", "ghost"), ("protocol", "native"), ("route", ""), ("version", ""))
    assert samples[("mlprod_request_errors_total", missing)] == 1
    assert samples[("mlprod_models_loaded", ())] == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"rows": [{"x": Infinity, "c": "a"}]}', "expects a finite number, got inf"),
        ('{"rows": [{"x": 1e400, "c": "a"}]}', "expects a finite number"),
        ('{"rows": [{"x": 1' + "0" * 400 + ', "c": "a"}]}', "expects a finite number, got an integer beyond"),
        ('{"columns": {"x": [1' + "0" * 400 + '], "c": ["a"]}}', "expects a finite number"),
        ('{"id": "\\ud800", "rows": [{"x": 1, "c": "a"}]}', '"id" is not valid Unicode text'),
        ('{"route_key": "\\udfff", "rows": [{"x": 1, "c": "a"}]}', '"route_key" is not valid Unicode text'),
    ],
)
def test_infinities_and_lone_surrogates_are_422(client: httpx.Client, raw: str, message: str) -> None:
    response = client.post(
        "/v1/models/toy/predict", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and message in response.json()["error"]["message"]


def test_nan_is_a_missing_value_like_null(client: httpx.Client) -> None:
    raw = '{"rows": [{"x": NaN, "c": "a"}, {"x": null, "c": "a"}]}'
    answer = client.post("/v1/models/toy/predict", content=raw, headers=JSON).json()
    assert answer["predictions"][0] == answer["predictions"][1]


def test_admin_text_must_be_storable_and_changes_are_signed_by_the_token(client: httpx.Client) -> None:
    bad = client.put("/v1/admin/routes/toy", content='{"why": "\\ud800"}', headers=JSON)
    assert bad.status_code == 422 and "not valid Unicode" in bad.json()["error"]["message"]
    sticky = client.put("/v1/admin/routes/toy", content='{"sticky_key": "\\udfff"}', headers=JSON)
    assert sticky.status_code == 422
    assert client.get("/v1/admin/routes/toy/history").json()["changes"] == []
    assert client.put("/v1/admin/routes/toy", json={"champion": "/2"}).status_code == 200
    assert client.get("/v1/admin/routes/toy/history").json()["changes"][0]["who"] == "token:local-admin"


def test_a_non_ascii_version_digit_is_422(client: httpx.Client) -> None:
    response = client.post("/v1/models/toy/versions/%C2%B2/predict", json={"rows": [ROW]})
    assert response.status_code == 422 and "positive integer" in response.json()["error"]["message"]


def test_a_sticky_value_that_is_a_lone_surrogate_still_routes(three_versions: Workspace) -> None:
    RouteStore(three_versions).set(RoutePlan("toy", canary="/2", canary_percent=50, sticky_key="c"))
    with (
        BackgroundServer(create_app(three_versions, options=FAST)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        raw = '{"rows": [{"x": 1.0, "c": "\\ud800"}]}'
        response = c.post("/v1/models/toy/predict", content=raw, headers=JSON)
    assert response.status_code == 422 and "not an allowed category" in response.json()["error"]["message"]
