"""Large request bodies: parsed in steps (the same result and errors as ``json.loads``), refused at the
row bound before the rest is read, and never stalling other requests (health polled meanwhile)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlprod.errors import InvalidInputError, MlprodError, PayloadTooLargeError
from mlprod.models import ModelVersion
from mlprod.serve.large_body import parse_large_json_object
from mlprod.workspace import Workspace

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
)
bodies = st.dictionaries(st.text(max_size=6), values, max_size=5)


@settings(max_examples=300, deadline=None)
@given(body=bodies, indent=st.sampled_from([None, 0, 2]), separators=st.sampled_from([None, (",", ":")]))
def test_the_same_object_as_json_loads(body: dict[str, object], indent: int | None,
                                       separators: tuple[str, str] | None) -> None:  # fmt: skip
    raw = json.dumps(body, indent=indent, separators=separators).encode()
    assert parse_large_json_object(raw, max_items=100) == json.loads(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=40) | st.text(alphabet='{}[]":, 1a\\n', max_size=30).map(str.encode))
def test_the_same_errors_as_json_loads(raw: bytes) -> None:
    try:
        expected: object = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, json.JSONDecodeError) else ""
        with pytest.raises(InvalidInputError, match=f"^request body is not valid JSON: {re.escape(reason)}"):
            parse_large_json_object(raw, max_items=100)
        return
    if isinstance(expected, dict):
        assert parse_large_json_object(raw, max_items=100) == expected
    else:
        with pytest.raises(InvalidInputError, match="request body must be a JSON object"):
            parse_large_json_object(raw, max_items=100)


@pytest.mark.parametrize(
    "body",
    [
        {"rows": [{"x": 1}] * 11},
        {"columns": {"x": [1.0] * 11, "c": ["a"] * 11}},
        {"columns": {"x": [1.0] * 10, "c": ["a"] * 11}},
    ],
)
def test_an_array_past_the_bound_is_refused(body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()
    with pytest.raises(
        PayloadTooLargeError, match=r"more than 10 rows \(config: serve.max_rows_per_request\)"
    ):
        parse_large_json_object(raw, max_items=10)
    assert parse_large_json_object(raw, max_items=11) == body


def test_refused_at_the_bound_without_reading_the_rest() -> None:
    raw = b'{"rows": [' + b'{"x": 1},' * 20 + b" this is not JSON"
    with pytest.raises(PayloadTooLargeError):
        parse_large_json_object(raw, max_items=10)
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        parse_large_json_object(raw, max_items=100)


# -------------------------------------------------------------- a real server, health polled meanwhile

# The goal is 50 ms. This shared 2-core machine runs other engineers' tests too (load averages of
# 10-18), which can deschedule any process for a while, so the bound is on the 90th percentile, at
# twice the goal: with these bodies parsed and checked on the event loop instead, it is 130-250 ms
# here. The maximum must stay far below the 2.3-4.2 s stalls this replaced.
HEALTH_P90_BOUND_SECONDS = 0.1
HEALTH_MAX_BOUND_SECONDS = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _big_bodies() -> list[tuple[str, bytes, int, str]]:
    """(what, body, expected status, expected message part): 2 to 6 MB each."""
    n = 100_000
    over = {"columns": {"x": [i / 7 for i in range(n)], "c": ["abc"[i % 3] for i in range(n)]}}
    bad_last = {"rows": [{"x": i / 7, "c": "abc"[i % 3], "pad": "p" * 500} for i in range(10_000)]}
    ragged = {"columns": {"x": [0.5] * 9_000 + ["?"] * 1_000, "c": ["a"] * 10_000, "y": [1.0] * 10_000}}
    return [
        (
            "columns over the row bound",
            json.dumps(over).encode(),
            413,
            "(config: serve.max_rows_per_request)",
        ),
        ("10,000 rows with an unknown field", json.dumps(bad_last).encode(), 422, "unknown field(s) ['pad']"),
        (
            "10,000 columnar rows with an unknown column",
            json.dumps(ragged).encode(),
            422,
            "unknown field(s) ['y']",
        ),
    ]


def test_big_bad_requests_never_stall_health_checks(workspace: Workspace, registered: ModelVersion) -> None:
    _health_stays_fast_while_posting(workspace, "/v1/models/toy@champion/predict", _big_bodies())


def _big_protocol_bodies() -> list[tuple[str, bytes, int, str]]:
    """The same for the Open Inference Protocol's infer route: 2 to 6 MB each, refused at the end."""
    n = 10_000

    def tensor(name: str, datatype: str, data: list[object]) -> dict[str, object]:
        return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}

    over = {
        "inputs": [
            tensor("x", "FP64", [i / 7 for i in range(100_000)]),
            tensor("c", "BYTES", ["a"] * 100_000),
        ]
    }
    padded = [
        tensor("x", "FP64", [i / 7 for i in range(n)]),
        tensor("c", "BYTES", ["abc"[i % 3] for i in range(n)]),
    ]
    unknown = {"inputs": [*padded, tensor("pad", "BYTES", ["p" * 500] * n)]}
    bad_last = {
        "inputs": [tensor("c", "BYTES", ["b" * 300] * n), tensor("x", "FP64", [0.5] * (n - 1) + ["?"])]
    }
    return [
        (
            "a tensor over the row bound",
            json.dumps(over).encode(),
            413,
            "(config: serve.max_rows_per_request)",
        ),
        (
            "10,000 rows with an unknown tensor",
            json.dumps(unknown).encode(),
            422,
            "unknown input tensor(s) ['pad']",
        ),
        (
            "10,000 rows, the last value a string",
            json.dumps(bad_last).encode(),
            422,
            "element 9999: FP64 elements are numbers, got '?'",
        ),
    ]


def test_big_bad_protocol_requests_never_stall_health_checks(
    workspace: Workspace, registered: ModelVersion
) -> None:
    _health_stays_fast_while_posting(workspace, "/v2/models/toy/infer", _big_protocol_bodies())


def _health_stays_fast_while_posting(
    workspace: Workspace, path: str, bodies: list[tuple[str, bytes, int, str]]
) -> None:
    """Post ``bodies`` to ``path`` of a real server three times while a thread polls its health; each
    gets its expected status and message, and the health checks stay fast."""
    port = _free_port()
    command = [sys.executable, "-m", "mlprod", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=workspace.root, env=dict(os.environ), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        latencies: list[float] = []
        answers: list[tuple[str, int, str]] = []
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=url, timeout=30) as health:
                while not stop.is_set():
                    started = time.perf_counter()
                    assert health.get("/v2/health/live").status_code == 200
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.01)

        poller = threading.Thread(target=poll, daemon=True)
        with httpx.Client(base_url=url, timeout=60) as client:
            warm = client.post("/v1/models/toy@champion/predict", json={"rows": [{"x": 0.3, "c": "a"}]})
            assert warm.status_code == 200  # the model is loaded: what follows is only the big requests
            baseline = []
            for _ in range(20):  # the health check's latency on this machine right now, alone
                started = time.perf_counter()
                client.get("/v2/health/live")
                baseline.append(time.perf_counter() - started)
            poller.start()
            for _round in range(3):
                for what, body, _status, _message in bodies:
                    response = client.post(path, content=body, headers={"content-type": "application/json"})
                    answers.append((what, response.status_code, response.text))
        stop.set()
        poller.join(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    ordered = sorted(latencies)
    median, p90 = ordered[len(ordered) // 2], ordered[len(ordered) * 9 // 10]
    ms = [f"{t * 1000:.1f} ms" for t in (max(baseline), median, p90, ordered[-1])]
    print(f"\nhealth alone: max {ms[0]}; while big requests ran: {len(latencies)} checks, median {ms[1]}, "
          f"p90 {ms[2]}, max {ms[3]}")  # fmt: skip
    assert p90 < HEALTH_P90_BOUND_SECONDS
    assert ordered[-1] < HEALTH_MAX_BOUND_SECONDS
    assert len(latencies) >= 20
    for (what, status, text), (_, _, expected_status, expected) in zip(answers, bodies * 3, strict=True):
        assert status == expected_status, (what, text[:300])
        assert expected in text, (what, text[:300])


def test_the_row_bound_is_configurable_and_checked_on_small_bodies(
    workspace: Workspace, registered: ModelVersion
) -> None:
    from mlprod.serve import BackgroundServer, ServeOptions, create_app

    options = ServeOptions(max_rows_per_request=3)
    with (
        BackgroundServer(create_app(workspace, options=options)) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        row = {"x": 0.3, "c": "a"}
        assert c.post("/v1/models/toy@champion/predict", json={"rows": [row] * 3}).status_code == 200
        refused = c.post("/v1/models/toy@champion/predict", json={"rows": [row] * 4})
        assert refused.status_code == 413
        assert refused.json()["error"]["message"] == (
            "the request has 4 rows; at most 3 rows per request (config: serve.max_rows_per_request): "
            "split it, or use `mlprod predict` for batches"
        )
        columns = {"columns": {"x": [0.3] * 4, "c": ["a"] * 4}}
        assert c.post("/v1/models/toy/predict", json=columns).status_code == 413
        ragged = c.post("/v1/models/toy/predict", json={"columns": {"x": [0.3] * 2, "c": ["a"]}})
        assert ragged.status_code == 422
        assert ragged.json()["error"]["message"] == "columns have different lengths: {'x': 2, 'c': 1}"
    assert issubclass(PayloadTooLargeError, MlprodError)
