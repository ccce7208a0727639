"""Each command against a real workspace."""

import json
import os
import re
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
    assert re.search(r"tables\s+0", info.stdout)


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


def test_non_loopback_serve_requires_tokens_unless_told_not_to(mlprod: Run, ws_with_model: Path) -> None:
    result = mlprod("serve", "--host", "203.0.113.1", "--port", "0", cwd=ws_with_model, timeout=60)
    assert "not required" not in result.stderr
    assert result.returncode == 2  # the address is not on this machine
    assert "error: cannot listen on 203.0.113.1:0" in result.stderr
    opened = mlprod("serve", "--host", "203.0.113.1", "--port", "0", "--auth", "never", cwd=ws_with_model)
    assert (
        "API tokens not required for predictions (auth=never): anyone who can reach 203.0.113.1 can predict; "
        "the admin API always needs one" in opened.stderr
    )


def test_environment_is_isolated() -> None:
    assert not [k for k in os.environ if k.startswith("MLPROD_") and k != "MLPROD_TEST_POSTGRES_URL"]


SPEC = """
model = "toy"
dataset = "toy-data"
label = "y"
time = "t"
categorical = ["c"]
tags = {{ team = "search" }}

[features]
x = "x"
c = "c"

[estimator]
kind = "{kind}"
params = {{ n_estimators = 20 }}
"""


@pytest.fixture
def ws_with_data(workspace: Workspace, tmp_path: Path) -> Path:
    import pyarrow as pa

    from mlprod.data import TableStore
    from tests.conftest import make_frame

    frame = make_frame(2000, seed=9)
    frame["t"] = range(len(frame))
    TableStore(workspace).create(
        "toy-data", key=["t"], data=pa.Table.from_pandas(frame, preserve_index=False)
    )
    for kind in ("lightgbm", "xgboost"):
        (tmp_path / f"{kind}.toml").write_text(SPEC.format(kind=kind))
    return workspace.root


def test_train_runs_rollback_export_search(mlprod: Run, ws_with_data: Path, tmp_path: Path) -> None:
    first = mlprod(
        "models", "train", str(tmp_path / "lightgbm.toml"), "--alias", "champion", cwd=ws_with_data
    )
    assert first.returncode == 0, first.stderr
    assert "toy/1 (@champion)" in first.stdout
    assert re.search(r"validation_auc\s+│ 0\.[89]\d+", first.stdout)
    second = mlprod(
        "models", "train", str(tmp_path / "xgboost.toml"), "--alias", "champion", cwd=ws_with_data
    )
    assert "toy/2 (@champion)" in second.stdout

    runs = mlprod("models", "runs", cwd=ws_with_data).stdout
    assert "lightgbm" in runs and "xgboost" in runs and runs.count("finished") == 2

    shown = mlprod("models", "show", "toy@champion", cwd=ws_with_data).stdout
    assert re.search(r"table toy-data @ main, commit [0-9a-f]{64} \(2,000 rows\)", shown)
    assert "xgboost-ubj" in shown and "team=search" in shown
    with Workspace.open(ws_with_data) as ws:
        v2 = Registry(ws).get("toy/2")
    assert f"format xgboost-ubj, model file sha256 {v2.artifact_sha256}" in shown
    inputs = f"inputs sha256 │ {v2.lineage['feature_set_hash']} (feature expressions, label, filter)"
    assert inputs in shown
    assert "feature set" not in shown  # no feature-store feature set was joined

    rolled = mlprod("models", "rollback", "toy", "champion", "--why", "bad canary", cwd=ws_with_data)
    assert "toy@champion rolled back: version 2 → version 1" in rolled.stdout
    history = mlprod("models", "history", "toy", cwd=ws_with_data).stdout
    assert "rollback" in history and "bad canary" in history

    onnx_file = tmp_path / "toy.onnx"
    exported = mlprod("models", "export", "toy@champion", "-o", str(onnx_file), cwd=ws_with_data)
    assert exported.returncode == 0, exported.stderr
    assert "toy/1 exported to onnx: parity max |diff|" in exported.stdout
    assert onnx_file.stat().st_size > 1000

    found = mlprod(
        "models", "search", "--tag", "team=search", "--metric", "validation_auc>=0.5", cwd=ws_with_data
    )
    assert "toy/2" in found.stdout and "toy/1" in found.stdout
    readme_example = mlprod("models", "search", "--metric", "auc>=0.7", cwd=ws_with_data)
    assert readme_example.returncode == 2
    assert (
        "error: unknown metric 'auc' (did you mean 'validation_auc'?); known metrics: "
        in readme_example.stderr
    )
    assert "no matching versions" in mlprod("models", "search", "--name", "nope", cwd=ws_with_data).stdout
    tagged = mlprod("models", "tag", "toy/1", "stage=prod", cwd=ws_with_data)
    assert "stage=prod, team=search" in tagged.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "train", "missing.toml"], "cannot read training spec"),
        (["models", "search", "--metric", "auc>>1"], "metric filter 'auc>>1': unknown operator '>>'"),
        (["models", "search", "--metric", "validation_auc>=0.7"], "unknown metric 'validation_auc'"),
        (["models", "tag", "toy/1", "novalue"], "tag 'novalue' should be KEY=VALUE"),
        (["models", "rollback", "ghost"], "model 'ghost' is not registered"),
        (["models", "export", "toy/9"], "model 'toy' has no version 9"),
    ],
)
def test_models_bad_input(mlprod: Run, ws_with_model: Path, args: list[str], message: str) -> None:
    result = mlprod(*args, cwd=ws_with_model)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_refuses_a_misspelled_hyperparameter(mlprod: Run, ws_with_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text(SPEC.format(kind="lightgbm").replace("n_estimators =", "n_estimatorz ="))
    result = mlprod("models", "train", str(bad), cwd=ws_with_data)
    assert result.returncode == 2
    assert (
        f"error: {bad}: estimator: unknown lightgbm parameter 'n_estimatorz' (did you mean 'n_estimators'?); "
        "valid parameters: " in result.stderr
    )
    assert "no training runs yet" in mlprod("models", "runs", cwd=ws_with_data).stdout


def test_train_with_a_bad_spec_registers_nothing(mlprod: Run, ws_with_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.format(kind="lightgbm").replace('label = "y"', 'label = "y_typo"'))
    result = mlprod("models", "train", str(bad), cwd=ws_with_data)
    assert result.returncode == 2
    assert "does not evaluate on the data" in result.stderr and "y_typo" in result.stderr
    assert "no models registered yet" in mlprod("models", "list", cwd=ws_with_data).stdout
    assert "failed" in mlprod("models", "runs", cwd=ws_with_data).stdout


def test_batch_predict_to_an_unwritable_place(
    mlprod: Run, ws_with_model: Path, frame: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    frame[["x", "c"]].head(5).to_parquet(source)
    (tmp_path / "afile").write_text("")
    result = mlprod(
        "predict", "toy", str(source), "-o", str(tmp_path / "afile" / "out.parquet"), cwd=ws_with_model
    )
    assert result.returncode == 2
    assert f"error: cannot write predictions to {tmp_path / 'afile' / 'out.parquet'}" in result.stderr


def test_train_with_an_invalid_alias_registers_nothing(
    mlprod: Run, ws_with_data: Path, tmp_path: Path
) -> None:
    result = mlprod(
        "models", "train", str(tmp_path / "lightgbm.toml"), "--alias", "bad alias", cwd=ws_with_data
    )
    assert result.returncode == 2
    assert "alias name 'bad alias' is not valid" in result.stderr
    assert "no models registered yet" in mlprod("models", "list", cwd=ws_with_data).stdout


def test_export_to_a_missing_directory(mlprod: Run, ws_with_data: Path, tmp_path: Path) -> None:
    mlprod("models", "train", str(tmp_path / "lightgbm.toml"), cwd=ws_with_data)
    result = mlprod("models", "export", "toy/1", "-o", str(tmp_path / "nope" / "x.onnx"), cwd=ws_with_data)
    assert result.returncode == 2
    assert "nope is not a directory" in result.stderr
