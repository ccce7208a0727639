import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mlprod.serve import PredictionLogWriter, read_prediction_log


def append(writer: PredictionLogWriter, request_id: str, n: int = 1) -> None:
    writer.append(
        request_id=request_id,
        model="m",
        version=1,
        route="m@champion",
        inputs=[{"x": i} for i in range(n)],
        predictions=[0.5] * n,
        latency_ms=1.0,
    )


def test_empty_log_reads_as_an_empty_table(tmp_path: Path) -> None:
    assert read_prediction_log(tmp_path / "none").num_rows == 0


def test_records_are_flushed_on_the_timer(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=0.05)
    try:
        append(writer, "a", n=3)
        deadline = time.monotonic() + 5
        while read_prediction_log(tmp_path).num_rows < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert read_prediction_log(tmp_path).column("row").to_pylist() == [0, 1, 2]
    finally:
        writer.close()


def test_close_flushes_what_is_buffered(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=3600)
    append(writer, "a")
    append(writer, "b")
    assert read_prediction_log(tmp_path).num_rows == 0
    writer.close()
    assert read_prediction_log(tmp_path).column("request_id").to_pylist() == ["a", "b"]


def test_a_full_buffer_is_flushed_early(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=3600, max_buffered_rows=10)
    try:
        append(writer, "a", n=10)
        deadline = time.monotonic() + 5
        while read_prediction_log(tmp_path).num_rows < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert read_prediction_log(tmp_path).num_rows == 10
    finally:
        writer.close()


def test_a_crash_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    """kill -9 a writer: what was appended more than one interval ago is on disk, whole."""
    script = textwrap.dedent(f"""
        import sys, time
        from mlprod.serve import PredictionLogWriter
        w = PredictionLogWriter({str(tmp_path)!r}, flush_interval=0.1)
        for i in range(20):
            w.append(request_id=f"early-{{i}}", model="m", version=1, route="r",
                     inputs=[{{"i": i}}], predictions=[0.1], latency_ms=1.0)
        time.sleep(0.5)
        print("ready", flush=True)
        while True:
            w.append(request_id="late", model="m", version=1, route="r",
                     inputs=[{{}}], predictions=[0.1], latency_ms=1.0)
            time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    log = read_prediction_log(tmp_path).to_pandas()  # every file on disk parses: none is partial
    early = set(log.loc[log["request_id"].str.startswith("early"), "request_id"])
    assert early == {f"early-{i}" for i in range(20)}
    assert (log["request_id"] == "late").sum() > 0
    assert not [p for p in tmp_path.rglob("*.parquet") if p.name.startswith(".")]


def test_a_failed_write_keeps_the_records_and_the_writer_alive(tmp_path: Path) -> None:
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log directory should be")
    writer = PredictionLogWriter(blocked, flush_interval=0.05)
    try:
        append(writer, "kept")
        time.sleep(0.3)  # several failed flushes
        blocked.unlink()
        deadline = time.monotonic() + 5
        while read_prediction_log(blocked).num_rows == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_prediction_log(blocked).column("request_id").to_pylist() == ["kept"]
    finally:
        writer.close()
