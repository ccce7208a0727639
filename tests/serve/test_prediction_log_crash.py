"""``kill -9`` during traffic loses at most the last flush interval of the prediction log, and nothing
on disk is partial.

The main test runs the real ``mlprod serve`` on a workspace with a trained toy model, with
``MLPROD_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS=0.5``, sends requests one after the other with known
ids, kills the server with SIGKILL in the middle of the traffic, and checks what is on disk against
the time each answer came back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from mlprod.models import ModelVersion
from mlprod.serve.prediction_log import SCHEMA, read_prediction_log
from mlprod.workspace import Workspace

FLUSH_INTERVAL = 0.5
# A row is durable one flush interval after it was appended, plus the time of one write (a few ms
# here); the slack also covers the scheduling delays of a loaded 2-core machine.
WRITE_SLACK = 0.5
TRAFFIC_SECONDS = 3.0
MAX_REQUESTS = 20_000


@pytest.fixture
def ws_with_model(workspace: Workspace, registered: ModelVersion) -> Path:
    return workspace.root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def _check_files(log_dir: Path) -> tuple[int, int]:
    """Every complete file parses with the log's schema; returns (rows in them, leftover temporary files)."""
    rows = 0
    for path in sorted(log_dir.rglob("part-*.parquet")):
        table = pq.read_table(path)
        assert table.schema.remove_metadata() == SCHEMA, path
        rows += table.num_rows
    leftovers = [p for p in log_dir.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert all(p.name.endswith(".parquet.tmp") for p in leftovers), leftovers
    return rows, len(leftovers)


def test_kill_9_of_the_server_loses_at_most_the_last_flush_interval(ws_with_model: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MLPROD_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": str(FLUSH_INTERVAL)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlprod", "serve", "--port", str(port)],
        cwd=ws_with_model,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    answered: list[float] = []  # answered[i]: when the answer to request crash-i came back
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(MAX_REQUESTS):
                if stop.is_set():
                    return
                body = {"id": f"crash-{i}", "rows": [{"x": (i % 7) / 7, "c": "abc"[i % 3]}]}
                try:
                    response = client.post("/v1/models/toy@champion/predict", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                assert response.status_code == 200, response.text
                answered.append(time.monotonic())

    try:
        _wait_ready(proc, url)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 60
        while not answered or time.monotonic() - answered[0] < TRAFFIC_SECONDS:
            assert sender.is_alive() and time.monotonic() < deadline, "traffic did not flow"
            time.sleep(0.01)
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        stop.set()
    sender.join(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    log_dir = ws_with_model / "predictions"
    file_rows, leftovers = _check_files(log_dir)
    log = read_prediction_log(log_dir)
    assert log.num_rows == file_rows  # only complete files are read, never a temporary one
    ids = log.column("request_id").to_pylist()
    assert len(ids) == len(set(ids))  # nothing written twice
    logged = sorted(int(i.removeprefix("crash-")) for i in ids)
    sent = len(answered)
    # Requests went one after the other, so the log holds a prefix of them: crash-0 … crash-(k-1)
    # (possibly including the one in flight at the kill, appended but not yet answered).
    assert logged == list(range(len(logged)))
    assert len(logged) <= sent + 1
    lost = range(len(logged), sent)
    guarantee = FLUSH_INTERVAL + WRITE_SLACK
    old_enough = sum(1 for t in answered if killed_at - t > guarantee)
    assert len(logged) >= old_enough, (
        "a request answered more than one flush interval before the kill is missing"
    )
    last_window = sum(1 for t in answered if killed_at - t <= guarantee)
    assert len(lost) <= last_window
    oldest_lost_age = killed_at - answered[lost[0]] if lost else 0.0
    rate = sent / (answered[-1] - answered[0])
    print(
        f"\ncrash: {sent} answered at {rate:.0f} req/s over {TRAFFIC_SECONDS}s, {len(logged)} logged, "
        f"{len(lost)} lost (oldest lost answered {oldest_lost_age * 1000:.0f} ms before the kill; "
        f"interval {FLUSH_INTERVAL * 1000:.0f} ms), {leftovers} leftover temporary file(s)"
    )


def test_kill_9_of_a_writer_that_appends_nonstop(tmp_path: Path) -> None:
    """The writer alone, appending every millisecond up to the kill: the same guarantee, no server."""
    script = textwrap.dedent(f"""
        import sys, time
        from mlprod.serve import PredictionLogWriter
        w = PredictionLogWriter({str(tmp_path)!r}, flush_interval=0.1)
        for i in range(20):
            w.append(request_id=f"early-{{i}}", model="m", version=1, route="r",
                     inputs=[{{"i": i}}], predictions=[0.1], latency_ms=1.0)
        time.sleep(0.5)
        print("ready", flush=True)
        i = 0
        while True:
            w.append(request_id=f"late-{{i}}", model="m", version=1, route="r",
                     inputs=[{{}}], predictions=[0.1], latency_ms=1.0)
            i += 1
            time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    rows, _ = _check_files(tmp_path)
    ids = read_prediction_log(tmp_path).column("request_id").to_pylist()
    assert len(ids) == rows == len(set(ids))
    assert {i for i in ids if i.startswith("early")} == {f"early-{i}" for i in range(20)}
    late = sorted(int(i.removeprefix("late-")) for i in ids if i.startswith("late"))
    assert late and late == list(range(len(late)))  # a prefix: no gap in the middle
