import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.models import ModelVersion, Registry
from mlprod.serve import BackgroundServer, RoutePlan, RouteStore, create_app
from mlprod.serve.metrics import CONTENT_TYPE, LATENCY_BUCKETS, OVERFLOW_MODEL, ServingMetrics
from mlprod.serve.service import MAX_PENDING_SHADOWS
from mlprod.workspace import Workspace
from tests.conftest import train_toy

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Parse with the reference parser: family types by name, and every sample by (name, labels)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return types, samples


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def series(
    model: str = "m", version: str = "1", route: str = "m@champion", protocol: str = "native"
) -> dict[str, str]:
    return {"model": model, "version": version, "route": route, "protocol": protocol}


def test_empty_metrics_render_valid_text_with_every_family() -> None:
    text = ServingMetrics().render()
    types, samples = parse(text)
    assert types == {
        "mlprod_requests": "counter",
        "mlprod_request_errors": "counter",
        "mlprod_request_latency_seconds": "histogram",
        "mlprod_predictions": "counter",
        "mlprod_shadow_dropped": "counter",
    }
    assert samples == {}
    assert text.endswith("\n")
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_requests_errors_and_latency_are_exact_after_known_observations() -> None:
    metrics = ServingMetrics()
    for status, seconds in [(200, 0.0005), (200, 0.003), (200, 0.75), (404, 0.001), (503, 7.0), (500, 0.0)]:
        metrics.observe(model="m", version=1, route="m@champion", status=status, seconds=seconds)
    metrics.observe(model="m", version=2, route="m@canary", status=200, seconds=0.02)
    types, samples = parse(metrics.render())

    base = series()
    for status_label, count in [("200", 3), ("404", 1), ("503", 1), ("500", 1)]:
        assert samples["mlprod_requests_total", labels(**base, status=status_label)] == count
    assert samples["mlprod_requests_total", labels(**series("m", "2", "m@canary"), status="200")] == 1
    assert samples["mlprod_request_errors_total", labels(**base, code="4xx")] == 1
    assert samples["mlprod_request_errors_total", labels(**base, code="5xx")] == 2
    assert not any(
        name == "mlprod_request_errors_total" and ("version", "2") in key for name, key in samples
    ), "a series with no error has no error counter"

    # le is inclusive: 0.0005 and 0.0 fall in the first bucket, 0.001 in the second, 7.0 only in +Inf
    expected_cumulative = {
        "0.0005": 2, "0.001": 3, "0.0025": 3, "0.005": 4, "0.01": 4, "0.025": 4, "0.05": 4,
        "0.1": 4, "0.25": 4, "0.5": 4, "1.0": 5, "2.5": 5, "5.0": 5, "+Inf": 6,
    }  # fmt: skip
    buckets = {
        dict(key)["le"]: value
        for (name, key), value in samples.items()
        if name == "mlprod_request_latency_seconds_bucket" and dict(key)["version"] == "1"
    }
    assert buckets == expected_cumulative
    assert samples["mlprod_request_latency_seconds_count", labels(**base)] == 6
    assert samples["mlprod_request_latency_seconds_sum", labels(**base)] == pytest.approx(
        0.0005 + 0.003 + 0.75 + 0.001 + 7.0
    )
    assert samples["mlprod_request_latency_seconds_count", labels(**series("m", "2", "m@canary"))] == 1
    assert types["mlprod_request_latency_seconds"] == "histogram"


def test_histogram_buckets_are_the_documented_ones() -> None:
    assert LATENCY_BUCKETS == (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
    metrics = ServingMetrics()
    metrics.observe(model="m", version=1, route="r", status=200, seconds=0.1)
    text = metrics.render()
    les = [line.split('le="')[1].split('"')[0] for line in text.splitlines() if "_bucket{" in line]
    assert les == ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                   "1.0", "2.5", "5.0", "+Inf"]  # fmt: skip


def test_unknown_version_renders_as_an_empty_label() -> None:
    metrics = ServingMetrics()
    metrics.observe(model="nope", version=None, route="nope", status=404, seconds=0.001)
    _, samples = parse(metrics.render())
    assert samples["mlprod_requests_total", labels(**series("nope", "", "nope"), status="404")] == 1
    assert samples["mlprod_request_errors_total", labels(**series("nope", "", "nope"), code="4xx")] == 1


def test_prediction_rows_are_counted_per_model_and_version() -> None:
    metrics = ServingMetrics()
    metrics.observe_prediction_rows("m", 1, 10)
    metrics.observe_prediction_rows("m", 1, 5)
    metrics.observe_prediction_rows("m", 2, 0)
    _, samples = parse(metrics.render())
    assert samples["mlprod_predictions_total", labels(model="m", version="1")] == 15
    assert samples["mlprod_predictions_total", labels(model="m", version="2")] == 0


def test_label_values_are_escaped() -> None:
    nasty = 'a"b\\c\nd,e}f=g'
    metrics = ServingMetrics()
    metrics.observe(model=nasty, version=1, route="r", status=200, seconds=0.01)
    metrics.observe_prediction_rows(nasty, 1, 3)
    text = metrics.render()
    assert 'model="a\\"b\\\\c\\nd,e}f=g"' in text
    assert all(line.count("\n") == 0 for line in text.splitlines())
    _, samples = parse(text)
    assert samples["mlprod_requests_total", labels(**series(nasty, "1", "r"), status="200")] == 1
    assert samples["mlprod_predictions_total", labels(model=nasty, version="1")] == 3


def test_help_text_is_escaped() -> None:
    metrics = ServingMetrics()
    metrics.set_gauge_source("g", "two\nlines and a \\ backslash", lambda: [({}, 1.0)])
    text = metrics.render()
    assert "# HELP g two\\nlines and a \\\\ backslash\n" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["g"].documentation == "two\nlines and a \\ backslash"


def test_concurrent_observations_give_exact_totals() -> None:
    metrics = ServingMetrics()
    threads, per_thread = 8, 2_000
    start = threading.Barrier(threads + 1)
    scrapes: list[str] = []

    def work(i: int) -> None:
        start.wait()
        for j in range(per_thread):
            status = 500 if j % 4 == 0 else 200
            metrics.observe(model="shared", version=1, route="r", status=status, seconds=0.5)
            metrics.observe(model=f"own{i}", version=1, route="r", status=200, seconds=0.25)
            metrics.observe_prediction_rows("shared", 1, 2)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    while any(w.is_alive() for w in workers):  # scraping while observing must not break either
        scrapes.append(metrics.render())
    for worker in workers:
        worker.join()

    _, samples = parse(metrics.render())
    shared = series("shared", "1", "r")
    total = threads * per_thread
    assert samples["mlprod_requests_total", labels(**shared, status="200")] == total * 3 // 4
    assert samples["mlprod_requests_total", labels(**shared, status="500")] == total // 4
    assert samples["mlprod_request_errors_total", labels(**shared, code="5xx")] == total // 4
    assert samples["mlprod_request_latency_seconds_count", labels(**shared)] == total
    assert samples["mlprod_request_latency_seconds_sum", labels(**shared)] == total * 0.5  # exact in binary
    assert samples["mlprod_request_latency_seconds_bucket", labels(**shared, le="0.25")] == 0
    assert samples["mlprod_request_latency_seconds_bucket", labels(**shared, le="0.5")] == total
    for i in range(threads):
        assert samples["mlprod_request_latency_seconds_sum", labels(**series(f"own{i}", "1", "r"))] == 500.0
    assert samples["mlprod_predictions_total", labels(model="shared", version="1")] == 2 * total
    for text in scrapes:
        parse(text)  # every intermediate scrape is valid too


def test_instances_do_not_share_state() -> None:
    first, second = ServingMetrics(), ServingMetrics()
    first.observe(model="m", version=1, route="r", status=200, seconds=0.01)
    assert parse(second.render())[1] == {}


def test_gauge_sources_are_read_at_scrape_time() -> None:
    metrics = ServingMetrics()
    loaded = {"flights": 2}

    def models_loaded() -> Iterable[tuple[Mapping[str, str], float]]:
        return [({"model": name}, float(n)) for name, n in loaded.items()]

    metrics.set_gauge_source("mlprod_models_loaded", "Model versions in memory.", models_loaded)
    metrics.set_gauge_source(
        "mlprod_models_memory_bytes", "Bytes held by loaded models.", lambda: [({}, 1.5e9)]
    )
    types, samples = parse(metrics.render())
    assert types["mlprod_models_loaded"] == "gauge"
    assert types["mlprod_models_memory_bytes"] == "gauge"
    assert samples["mlprod_models_loaded", labels(model="flights")] == 2
    assert samples["mlprod_models_memory_bytes", frozenset()] == 1.5e9

    loaded["flights"] = 1
    loaded["taxi"] = 3
    _, samples = parse(metrics.render())
    assert samples["mlprod_models_loaded", labels(model="flights")] == 1
    assert samples["mlprod_models_loaded", labels(model="taxi")] == 3


def test_setting_a_gauge_again_replaces_its_source() -> None:
    metrics = ServingMetrics()
    metrics.set_gauge_source("g", "first", lambda: [({}, 1.0)])
    metrics.set_gauge_source("g", "second", lambda: [({}, 2.0)])
    text = metrics.render()
    assert text.count("# TYPE g gauge") == 1
    assert "# HELP g second" in text
    assert parse(text)[1]["g", frozenset()] == 2.0


def test_gauge_values_nan_and_infinity_are_written_as_prometheus_does() -> None:
    metrics = ServingMetrics()
    metrics.set_gauge_source("g", "h", lambda: [({"k": "nan"}, math.nan), ({"k": "inf"}, math.inf)])
    text = metrics.render()
    assert 'g{k="nan"} NaN' in text
    assert 'g{k="inf"} +Inf' in text
    samples = parse(text)[1]
    assert math.isnan(samples["g", labels(k="nan")])
    assert samples["g", labels(k="inf")] == math.inf


def test_a_gauge_source_may_use_the_metrics_itself_without_deadlock() -> None:
    metrics = ServingMetrics()

    def source() -> list[tuple[dict[str, str], float]]:
        metrics.observe(model="m", version=1, route="r", status=200, seconds=0.01)
        return [({}, 1.0)]

    metrics.set_gauge_source("g", "h", source)
    metrics.render()
    _, samples = parse(metrics.render())  # counters are copied before the gauges are read
    assert samples["mlprod_requests_total", labels(**series("m", "1", "r"), status="200")] == 1
    assert samples["g", frozenset()] == 1.0


def test_a_failing_gauge_source_is_logged_and_the_scrape_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServingMetrics()
    metrics.observe(model="m", version=1, route="r", status=200, seconds=0.01)

    def broken() -> list[tuple[dict[str, str], float]]:
        raise RuntimeError("cache is gone")

    metrics.set_gauge_source("broken", "h", broken)
    metrics.set_gauge_source("bad_label", "h", lambda: [({"bad-label": "x"}, 1.0)])
    metrics.set_gauge_source("twice", "h", lambda: [({"a": "1"}, 1.0), ({"a": "1"}, 2.0)])
    metrics.set_gauge_source("fine", "h", lambda: [({}, 4.0)])
    with caplog.at_level(logging.ERROR, logger="mlprod.serve.metrics"):
        types, samples = parse(metrics.render())
    assert samples["fine", frozenset()] == 4.0
    assert samples["mlprod_requests_total", labels(**series("m", "1", "r"), status="200")] == 1
    assert {"broken", "bad_label", "twice"} <= set(types)  # declared, with no samples
    assert not any(name in {"broken", "bad_label", "twice"} for name, _ in samples)
    messages = [r.getMessage() for r in caplog.records]
    assert "gauge source 'broken' failed; the scrape goes on without it" in messages
    text = caplog.text
    assert "cache is gone" in text
    assert "label name 'bad-label' is not a valid Prometheus label name" in text
    assert "labels {'a': '1'} are yielded twice" in text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("9lives", "gauge name '9lives' is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
        ("with space", "gauge name 'with space' is not a valid Prometheus metric name"),
        ("", "gauge name '' is not a valid Prometheus metric name"),
        (
            "mlprod_requests_total",
            "gauge name 'mlprod_requests_total' is already used by a built-in serving metric",
        ),
        (
            "mlprod_request_latency_seconds_bucket",
            "gauge name 'mlprod_request_latency_seconds_bucket' is already used by a built-in serving metric",
        ),
    ],
)
def test_bad_gauge_names_are_rejected(name: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        ServingMetrics().set_gauge_source(name, "h", lambda: [])
    assert str(info.value).startswith(message)


def test_a_gauge_source_must_be_callable() -> None:
    with pytest.raises(InvalidInputError, match="gauge 'g': the source must be callable, got list"):
        ServingMetrics().set_gauge_source("g", "h", [({}, 1.0)])  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-0.001, math.nan, -math.inf])
def test_bad_latency_is_rejected(seconds: float) -> None:
    metrics = ServingMetrics()
    with pytest.raises(InvalidInputError, match=r"ServingMetrics.observe: seconds must be >= 0, got"):
        metrics.observe(model="m", version=1, route="r", status=200, seconds=seconds)
    assert parse(metrics.render())[1] == {}


def test_an_unhashable_label_does_not_leave_the_lock_held() -> None:
    metrics = ServingMetrics()
    with pytest.raises(TypeError):
        metrics.observe(model=["m"], version=1, route="r", status=200, seconds=0.1)  # type: ignore[arg-type]
    metrics.observe(model="m", version=1, route="r", status=200, seconds=0.1)
    assert (
        parse(metrics.render())[1]["mlprod_requests_total", labels(**series("m", "1", "r"), status="200")]
        == 1
    )


def test_negative_prediction_rows_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"observe_prediction_rows: n must be >= 0, got -1"):
        ServingMetrics().observe_prediction_rows("m", 1, -1)


@pytest.mark.parametrize("buckets", [(), (0.1, 0.1), (0.2, 0.1), (0.1, math.inf), (math.nan,)])
def test_bad_buckets_are_rejected(buckets: tuple[float, ...]) -> None:
    with pytest.raises(InvalidInputError, match="buckets must be finite, strictly increasing and not empty"):
        ServingMetrics(buckets=buckets)


def test_bad_max_series_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="max_series must be at least 1, got 0"):
        ServingMetrics(max_series=0)


def test_custom_buckets() -> None:
    metrics = ServingMetrics(buckets=[1, 2])
    metrics.observe(model="m", version=1, route="r", status=200, seconds=1.5)
    _, samples = parse(metrics.render())
    base = series("m", "1", "r")
    assert samples["mlprod_request_latency_seconds_bucket", labels(**base, le="1.0")] == 0
    assert samples["mlprod_request_latency_seconds_bucket", labels(**base, le="2.0")] == 1
    assert samples["mlprod_request_latency_seconds_bucket", labels(**base, le="+Inf")] == 1


def test_label_sets_beyond_max_series_are_counted_as_overflow(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServingMetrics(max_series=2)
    with caplog.at_level(logging.WARNING, logger="mlprod.serve.metrics"):
        for i in range(5):
            metrics.observe(model=f"m{i}", version=1, route="r", status=404, seconds=0.01)
            metrics.observe(model=f"m{i}", version=1, route="r", status=500, seconds=0.01)
            metrics.observe_prediction_rows(f"m{i}", 1, 1)
    _, samples = parse(metrics.render())
    overflow = series(OVERFLOW_MODEL, "", OVERFLOW_MODEL)
    assert samples["mlprod_requests_total", labels(**series("m0", "1", "r"), status="404")] == 1
    assert samples["mlprod_requests_total", labels(**series("m0", "1", "r"), status="500")] == 1
    assert samples["mlprod_requests_total", labels(**overflow, status="404")] == 4
    assert samples["mlprod_requests_total", labels(**overflow, status="500")] == 4
    assert samples["mlprod_request_errors_total", labels(**overflow, code="4xx")] == 4
    assert samples["mlprod_request_latency_seconds_count", labels(**overflow)] == 8
    assert samples["mlprod_predictions_total", labels(model=OVERFLOW_MODEL, version="")] == 3
    assert sum(value for (name, _), value in samples.items() if name == "mlprod_requests_total") == 10
    assert "serving metrics reached max_series=2 label sets" in caplog.text


def test_each_protocol_counts_through_its_own_view_of_the_same_counters() -> None:
    metrics = ServingMetrics()
    oip, shadow = metrics.for_protocol("oip"), metrics.for_protocol("")
    metrics.observe(model="m", version=1, route="champion", status=200, seconds=0.01)
    oip.observe(model="m", version=1, route="champion", status=200, seconds=0.01)
    oip.observe(model="m", version=1, route="champion", status=422, seconds=0.01)
    shadow.observe(model="m", version=2, route="shadow", status=200, seconds=0.2)
    for view in (metrics, oip, shadow):  # any view renders everything
        _, samples = parse(view.render())
        assert samples["mlprod_requests_total", labels(**series(route="champion"), status="200")] == 1
        assert (
            samples["mlprod_requests_total", labels(**series(route="champion", protocol="oip"), status="200")]
            == 1
        )
        assert (
            samples[
                "mlprod_request_errors_total", labels(**series(route="champion", protocol="oip"), code="4xx")
            ]
            == 1
        )
        assert samples["mlprod_requests_total", labels(**series("m", "2", "shadow", ""), status="200")] == 1
        assert samples["mlprod_request_latency_seconds_count", labels(**series("m", "2", "shadow", ""))] == 1


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="protocol must be 'native', 'oip' or '', got 'grpc'"):
        ServingMetrics().for_protocol("grpc")


def test_a_served_workspace_counts_shadow_copies_and_each_protocol(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    trained = train_toy(frame, rounds=9)
    Registry(workspace).register("toy", trained.model, signature=trained.signature)
    RouteStore(workspace).set(RoutePlan("toy", shadows=("/2",)), why="watch v2")
    infer = {
        "inputs": [
            {"name": "x", "shape": [2], "datatype": "FP64", "data": [0.1, 0.2]},
            {"name": "c", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ]
    }
    with BackgroundServer(create_app(workspace)) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert client.post("/v1/models/toy/predict", json={"rows": [{"x": 0.3, "c": "a"}]}).is_success
        for _ in range(2):
            assert client.post("/v2/models/toy/infer", json=infer).is_success
        assert client.post("/v2/models/toy/infer", json={"inputs": []}).status_code == 422
        shadows = series("toy", "2", "shadow", "")
        deadline = time.monotonic() + 10
        while True:  # shadow copies run after the answers are sent
            response = client.get("/metrics")
            _, samples = parse(response.text)
            shadow = samples.get(("mlprod_requests_total", labels(**shadows, status="200")))
            if shadow == 5 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert response.headers["content-type"] == CONTENT_TYPE
    assert shadow == 5  # one copy per answered request, whatever its protocol
    champion = series("toy", "1", "champion")
    assert samples["mlprod_requests_total", labels(**champion, status="200")] == 3
    assert samples["mlprod_requests_total", labels(**{**champion, "protocol": "oip"}, status="200")] == 2
    refused = series("toy", "", "", "oip")
    assert samples["mlprod_request_errors_total", labels(**refused, code="4xx")] == 1
    assert samples["mlprod_request_latency_seconds_count", labels(**shadows)] == 5
    assert not any(
        dict(key).get("protocol") == "native" and dict(key)["route"] == "shadow" for _, key in samples
    )


def test_a_failed_shadow_copy_is_counted_with_the_status_its_error_maps_to(workspace: Workspace) -> None:
    app = create_app(workspace)
    observe = app.state.service.shadow_observer
    observe("toy", None, NotFoundError("model 'toy' has no version 9"), 0.01)
    observe("toy", 2, RuntimeError("a bug"), 0.02)
    observe("toy", 2, None, 0.03)
    _, samples = parse(app.state.metrics.render())
    assert samples["mlprod_requests_total", labels(**series("toy", "", "shadow", ""), status="404")] == 1
    assert samples["mlprod_requests_total", labels(**series("toy", "2", "shadow", ""), status="500")] == 1
    assert samples["mlprod_requests_total", labels(**series("toy", "2", "shadow", ""), status="200")] == 1
    assert samples["mlprod_request_errors_total", labels(**series("toy", "2", "shadow", ""), code="5xx")] == 1


def test_shadow_copies_dropped_by_a_saturated_queue_are_counted(
    workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame
) -> None:
    """A burst of requests on one event loop mirrors copies faster than the shadow (a worker thread
    each) answers them: past ``MAX_PENDING_SHADOWS`` pending, copies are dropped. Every answered
    request's copy is then either run (counted under route "shadow") or dropped (counted here)."""
    trained = train_toy(frame, rounds=9)
    Registry(workspace).register("toy", trained.model, signature=trained.signature)
    RouteStore(workspace).set(RoutePlan("toy", shadows=("/2",)), why="watch v2")
    app = create_app(workspace)
    burst = 3 * MAX_PENDING_SHADOWS

    async def send_burst() -> list[int]:
        async with (
            app.router.lifespan_context(app),  # the prediction log runs; shadows are drained at the end
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client,
        ):
            row = {"rows": [{"x": 0.3, "c": "a"}]}
            answers = await asyncio.gather(
                *(client.post("/v1/models/toy/predict", json=row) for _ in range(burst))
            )
        return [a.status_code for a in answers]

    assert asyncio.run(send_burst()) == [200] * burst
    families, samples = parse(app.state.metrics.render())
    assert families["mlprod_shadow_dropped"] == "counter"
    dropped = samples["mlprod_shadow_dropped_total", labels(model="toy", version="2")]
    run = samples["mlprod_requests_total", labels(**series("toy", "2", "shadow", ""), status="200")]
    assert dropped > 0
    assert dropped + run == burst
    assert dropped == app.state.service.shadows_dropped


def test_a_dropped_copy_for_an_alias_not_in_memory_has_no_version() -> None:
    metrics = ServingMetrics(max_series=1)
    metrics.observe_shadow_dropped("toy", None)
    metrics.observe_shadow_dropped("toy", None)
    metrics.observe_shadow_dropped("other", 3)  # past max_series: counted as the overflow model
    _, samples = parse(metrics.render())
    assert samples["mlprod_shadow_dropped_total", labels(model="toy", version="")] == 2
    assert samples["mlprod_shadow_dropped_total", labels(model=OVERFLOW_MODEL, version="")] == 1
