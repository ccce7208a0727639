"""``kill -9`` of a real ``mlprod serve`` under concurrent load loses no answered prediction.

Each round starts ``mlprod serve`` on the same workspace (whose writer first recovers the segments
the previous, killed, server left), sends requests with known ids from several connections at once,
kills the server with SIGKILL in the middle of the traffic, and checks the log: every request that
was answered 200 is there, exactly once. Ten rounds; then a last server is stopped gracefully and
everything must be in Parquet, once, with no segment left.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlprod.models import ModelVersion
from mlprod.serve import write_ahead
from mlprod.serve.prediction_log import SCHEMA, read_prediction_log
from mlprod.workspace import Workspace

ROUNDS = 10
CONNECTIONS = 6
MIN_ANSWERS = 30  # traffic is flowing; then the kill lands at a random moment of the next 0.5 s
KILL_WITHIN = 0.5


@pytest.fixture
def ws_with_model(workspace: Workspace, registered: ModelVersion) -> Path:
    return workspace.root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlprod", "serve", "--port", str(port)],
        cwd=root,
        env={**os.environ, "MLPROD_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": "0.2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                # loads the model before the timed traffic
                warm = {"id": f"warm-up-{port}-{time.time_ns()}", "rows": [{"x": 0.5, "c": "a"}]}
                response = httpx.post(f"{url}/v1/models/toy@champion/predict", json=warm, timeout=60)
                assert response.status_code == 200, response.text
                return proc, url
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)


def _load(url: str, prefix: str, answered: list[str], stop: threading.Event, errors: list[str]) -> None:
    """One connection sending requests back to back; ``answered`` gets each id answered 200."""
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            request_id = f"{prefix}-{i}"
            rows = [{"x": (i % 7) / 7, "c": "abc"[i % 3]}] * (1 + i % 3)  # one to three rows
            try:
                body = {"id": request_id, "rows": rows}
                response = client.post("/v1/models/toy@champion/predict", json=body)
            except httpx.TransportError:
                return  # the server is gone: this request was never answered
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text}")
                return
            answered.append(request_id)
            i += 1


def _keys(log: pa.Table) -> list[tuple[str, int]]:
    """(request id, row): a logged row's identity."""
    return list(zip(log.column("request_id").to_pylist(), log.column("row").to_pylist(), strict=True))


def test_kill_9_under_load_loses_no_answered_prediction(ws_with_model: Path) -> None:
    log_dir = ws_with_model / "predictions"
    all_answered: set[str] = set()
    report = []
    for round_ in range(ROUNDS):
        proc, url = _start(ws_with_model)
        answered: list[str] = []
        errors: list[str] = []
        stop = threading.Event()
        senders = [
            threading.Thread(target=_load, args=(url, f"k{round_}c{c}", answered, stop, errors), daemon=True)
            for c in range(CONNECTIONS)
        ]
        try:
            for sender in senders:
                sender.start()
            deadline = time.monotonic() + 60
            while len(answered) < MIN_ANSWERS and not errors:
                assert time.monotonic() < deadline, "traffic did not flow"
                time.sleep(0.01)
            time.sleep(random.uniform(0, KILL_WITHIN))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            stop.set()
        for sender in senders:
            sender.join(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert not errors, errors[:3]
        segments = len(write_ahead.segment_paths(log_dir))
        logged = read_prediction_log(log_dir)  # Parquet and the segments the kill left
        keys = _keys(logged)
        assert len(keys) == len(set(keys)), f"round {round_}: a row is logged twice"
        missing = set(answered) - {k[0] for k in keys}
        assert not missing, f"round {round_}: {len(missing)} answered not logged: {sorted(missing)[:5]}"
        all_answered.update(answered)
        report.append((len(answered), segments))

    proc, _url = _start(ws_with_model)  # recovers the last round's segments, then stops gracefully
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert write_ahead.segment_paths(log_dir) == []
    rows = 0
    for path in sorted(log_dir.rglob("part-*.parquet")):
        table = pq.read_table(path)
        assert table.schema.remove_metadata() == SCHEMA, path
        rows += table.num_rows
    log = read_prediction_log(log_dir)
    assert log.num_rows == rows  # all of it in Parquet now
    keys = _keys(log)
    assert len(keys) == len(set(keys))
    assert all_answered <= {k[0] for k in keys}
    print(
        f"\ncrash: {ROUNDS} kills under {CONNECTIONS} connections; answered per round "
        f"{[a for a, _ in report]}, segments left by each kill {[s for _, s in report]}; "
        f"0 answered requests missing, 0 rows twice"
    )
