"""``mlprod serve`` as a real subprocess: the port it prints, a taken port, the access log, the
shutdown line."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlprod.models import ModelVersion
from mlprod.serve import read_prediction_log
from mlprod.workspace import Workspace
from tests.cli.conftest import Run

TIMEOUT = 60  # seconds: the first prediction loads the model, slow on a loaded machine
SERVING = re.compile(r"mlprod serving workspace .* on (http://127\.0\.0\.1:(\d+)) \(Ctrl-C to stop\)")


@pytest.fixture
def ws_with_model(workspace: Workspace, registered: ModelVersion) -> Path:
    return workspace.root


def _start(ws: Path, *args: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``mlprod serve --port 0 ARGS``; return the process, the URL it printed and its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlprod", "serve", "--port", "0", *args],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # printed once the port is bound
    match = SERVING.search(first)
    if match is None:
        proc.kill()
        pytest.fail(f"no 'serving on' line: {first!r} {proc.communicate()[1]}")
    url, port = match.groups()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=TIMEOUT).status_code == 200:
                return proc, url, port
        except httpx.TransportError:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[str, str]:
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    return stdout, stderr


def test_port_0_prints_the_bound_port_and_it_answers(ws_with_model: Path) -> None:
    proc, url, port = _start(ws_with_model)
    try:
        assert int(port) > 0
        answer = httpx.post(
            f"{url}/v1/models/toy/predict", json={"rows": [{"x": 0.5, "c": "a"}]}, timeout=TIMEOUT
        )
        assert answer.status_code == 200 and answer.json()["version"] == 1
    finally:
        _stop(proc)


def test_a_taken_port_fails_with_exit_2_before_serving(mlprod: Run, ws_with_model: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = mlprod("serve", "--port", str(taken), cwd=ws_with_model, timeout=60)
    assert result.returncode == 2
    assert "serving" not in result.stdout
    assert (
        f"error: cannot listen on 127.0.0.1:{taken}: the port is already in use (another server?); "
        "choose another with --port, or --port 0 for a free one" in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_shutdown_reports_the_predictions_flushed(ws_with_model: Path, sig: int) -> None:
    proc, url, _ = _start(ws_with_model)
    try:
        for i in range(3):  # 3 requests of 2 rows: 6 predictions
            rows = [{"x": float(i), "c": "a"}, {"x": -float(i), "c": "b"}]
            answer = httpx.post(
                f"{url}/v1/models/toy/predict", json={"id": f"r{i}", "rows": rows}, timeout=TIMEOUT
            )
            assert answer.status_code == 200
    finally:
        _, stderr = _stop(proc, sig)
    assert stderr.strip().splitlines()[-1] == "stopped, 6 predictions flushed"
    assert read_prediction_log(ws_with_model / "predictions").num_rows == 6


def test_access_log_writes_one_json_line_per_request(ws_with_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    proc, url, _ = _start(ws_with_model, "--access-log", str(path))
    try:
        secret = "c-value-not-logged"
        ok = httpx.post(
            f"{url}/v1/models/toy/predict",
            json={"id": "acc-1", "rows": [{"x": 1.0, "c": "a"}]},
            timeout=TIMEOUT,
        )
        assert ok.status_code == 200
        refused = httpx.post(
            f"{url}/v1/models/toy/predict", json={"rows": [{"x": 1.0, "c": secret, "z": 1}]}, timeout=TIMEOUT
        )
        assert refused.status_code == 422
        assert httpx.get(f"{url}/nowhere?token=t", timeout=TIMEOUT).status_code == 404
    finally:
        _stop(proc, signal.SIGTERM)
    text = path.read_text()
    assert secret not in text and "token=t" not in text  # no bodies, no query strings
    lines = [json.loads(line) for line in text.splitlines()]
    fields = {"time", "method", "path", "status", "duration_ms", "model", "version", "request_id"}
    assert all(set(line) == fields for line in lines)
    by_path = {(line["method"], line["path"], line["status"]): line for line in lines}
    predicted = by_path[("POST", "/v1/models/toy/predict", 200)]
    assert (predicted["model"], predicted["version"], predicted["request_id"]) == ("toy", 1, "acc-1")
    assert predicted["duration_ms"] > 0 and predicted["time"].endswith("Z")
    assert by_path[("POST", "/v1/models/toy/predict", 422)]["model"] is None
    assert by_path[("GET", "/nowhere", 404)]["request_id"] is None
    assert ("GET", "/v2/health/ready", 200) in by_path  # the readiness polls of _start


def test_access_log_to_stdout(ws_with_model: Path) -> None:
    proc, url, _ = _start(ws_with_model, "--access-log", "-")
    try:
        answer = httpx.post(
            f"{url}/v1/models/toy@champion/predict", json={"rows": [{"x": 1.0, "c": "b"}]}, timeout=TIMEOUT
        )
        request_id = answer.json()["request_id"]
    finally:
        stdout, _ = _stop(proc)
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    predicted = [line for line in lines if line["path"] == "/v1/models/toy@champion/predict"]
    assert [(p["status"], p["model"], p["version"], p["request_id"]) for p in predicted] == [
        (200, "toy", 1, request_id)
    ]


def test_access_log_path_that_cannot_be_opened_fails_before_serving(
    mlprod: Run, ws_with_model: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir" / "access.jsonl"
    result = mlprod("serve", "--port", "0", "--access-log", str(missing), cwd=ws_with_model, timeout=60)
    assert result.returncode == 2
    assert "serving" not in result.stdout
    assert f"error: cannot open the access log {missing}: No such file or directory" in result.stderr
