"""Each command against a real workspace."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlprod.models import ModelVersion, Registry
from mlprod.serve import read_prediction_log
from mlprod.workspace import Workspace
from tests.cli.conftest import Run


def test_init_then_info(mlprod: Run, tmp_path: Path) -> None:
    result = mlprod("init", "ws")
    assert result.returncode == 0, result.stderr
    assert f"Initialised mlprod workspace in {tmp_path / 'ws'}" in result.stdout
    info = mlprod("info", cwd=tmp_path / "ws")
    assert "meta.db" in info.stdout
    assert "datasets           0" in info.stdout.replace("  0", "  0")


def test_data_import_list_show(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    csv = tmp_path / "cities.csv"
    csv.write_text("id,city\n1,Paris\n2,Oslo\n")
    imported = mlprod("-C", "ws", "data", "import", "cities", str(csv), "-m", "first")
    assert imported.returncode == 0, imported.stderr
    assert "cities version 1: 2 rows" in imported.stdout
    assert "cities  │ 1       │ 2" in mlprod("-C", "ws", "data", "list").stdout
    shown = mlprod("-C", "ws", "data", "show", "cities")
    assert "Paris" in shown.stdout and "Oslo" in shown.stdout


def test_data_import_of_a_bad_file(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2,3\n")
    result = mlprod("-C", "ws", "data", "import", "x", str(bad))
    assert result.returncode == 2
    assert f"error: cannot read {bad}" in result.stderr
    missing = mlprod("-C", "ws", "data", "import", "x", str(tmp_path / "nope.csv"))
    assert "does not exist" in missing.stderr


@pytest.fixture
def ws_with_model(workspace: Workspace, registered: ModelVersion) -> Path:
    return workspace.root


def test_models_list_show_alias_history(mlprod: Run, ws_with_model: Path) -> None:
    listed = mlprod("models", "list", cwd=ws_with_model)
    assert "toy" in listed.stdout and "@champion → 1" in listed.stdout
    shown = mlprod("models", "show", "toy@champion", cwd=ws_with_model)
    assert "toy/1" in shown.stdout and "lightgbm-text" in shown.stdout
    moved = mlprod("models", "alias", "toy", "staging", "1", "--why", "try it", cwd=ws_with_model)
    assert "toy@staging: nothing → version 1" in moved.stdout
    history = mlprod("models", "history", "toy", cwd=ws_with_model)
    assert "staging" in history.stdout and "try it" in history.stdout


def test_batch_predict_writes_a_parquet_file(
    mlprod: Run, ws_with_model: Path, frame: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    frame[["x", "c"]].head(50).to_parquet(source)
    output = tmp_path / "out" / "scored.parquet"
    result = mlprod("predict", "toy@champion", str(source), "-o", str(output), cwd=ws_with_model)
    assert result.returncode == 0, result.stderr
    scored = pq.read_table(output).to_pandas()
    with Workspace.open(ws_with_model) as ws:
        expected = Registry(ws).load("toy/1").predict_frame(frame.head(50))
    assert list(scored.columns) == ["x", "c", "probability"]
    assert scored["probability"].to_numpy() == pytest.approx(expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_then_flushes_the_log_on_ctrl_c(ws_with_model: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlprod", "serve", "--port", str(port)],
        cwd=ws_with_model,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        body = {"id": "cli-1", "rows": [{"x": 1.0, "c": "a"}]}
        answer = httpx.post(f"{url}/v1/models/toy@champion/predict", json=body).json()
        assert answer["version"] == 1 and 0 < answer["predictions"][0] < 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    log = read_prediction_log(ws_with_model / "predictions")
    assert log.column("request_id").to_pylist() == ["cli-1"]
    assert json.loads(log.column("inputs")[0].as_py()) == {"x": 1.0, "c": "a"}


def test_monitor_predictions_summarises_the_log(mlprod: Run, ws_with_model: Path) -> None:
    assert "no predictions logged yet" in mlprod("monitor", "predictions", cwd=ws_with_model).stdout
    from mlprod.serve import PredictionLogWriter

    writer = PredictionLogWriter(ws_with_model / "predictions")
    writer.append(
        request_id="r",
        model="toy",
        version=1,
        route="toy",
        inputs=[{}, {}],
        predictions=[0.25, 0.75],
        latency_ms=2.0,
    )
    writer.close()
    result = mlprod("monitor", "predictions", cwd=ws_with_model)
    assert "toy" in result.stdout and "0.5000" in result.stdout and "2.00" in result.stdout


def test_non_loopback_serve_warns(mlprod: Run, ws_with_model: Path) -> None:
    result = mlprod("serve", "--host", "203.0.113.1", "--port", "0", cwd=ws_with_model, timeout=60)
    assert "warning: serving on 203.0.113.1 without authentication" in result.stderr
    assert result.returncode == 2  # the address is not on this machine
    assert "error: cannot listen on 203.0.113.1:0" in result.stderr


def test_environment_is_isolated() -> None:
    assert not [k for k in os.environ if k.startswith("MLPROD_") and k != "MLPROD_TEST_POSTGRES_URL"]
