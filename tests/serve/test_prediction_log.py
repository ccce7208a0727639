"""The prediction log writer: its flush triggers, its bounds, its strict JSON, its errors.

The crash guarantee (``kill -9``) is tested in ``test_prediction_log_crash.py``, the write-ahead
segments in ``test_write_ahead.py``.
"""

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mlprod.errors import InvalidInputError
from mlprod.serve import PredictionLogWriter, read_prediction_log


def append(writer: PredictionLogWriter, request_id: str, n: int = 1) -> None:
    """One request of ``n`` rows."""
    writer.append(
        request_id=request_id,
        model="m",
        version=1,
        route="m@champion",
        inputs=[{"x": i} for i in range(n)],
        predictions=[0.5] * n,
        latency_ms=1.0,
    )


def parquet_rows(directory: Path) -> int:
    """Rows in the Parquet files alone (``read_prediction_log`` also reads the write-ahead segments)."""
    return sum(pq.read_metadata(p).num_rows for p in directory.rglob("part-*.parquet"))


def test_empty_log_reads_as_an_empty_table(tmp_path: Path) -> None:
    assert read_prediction_log(tmp_path / "none").num_rows == 0


def test_records_are_flushed_on_the_timer(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=0.05)
    try:
        append(writer, "a", n=3)
        deadline = time.monotonic() + 5
        while parquet_rows(tmp_path) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert parquet_rows(tmp_path) == 3
        assert read_prediction_log(tmp_path).column("row").to_pylist() == [0, 1, 2]
    finally:
        writer.close()


def test_close_flushes_what_is_buffered(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=3600)
    append(writer, "a")
    append(writer, "b")
    assert parquet_rows(tmp_path) == 0
    assert read_prediction_log(tmp_path).column("request_id").to_pylist() == ["a", "b"]  # from the segment
    writer.close()
    assert parquet_rows(tmp_path) == 2
    assert read_prediction_log(tmp_path).column("request_id").to_pylist() == ["a", "b"]
    assert not list((tmp_path / "_wal").iterdir())  # the segment is gone once its rows are in Parquet


def test_a_full_buffer_is_flushed_early(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=3600, max_buffered_rows=10)
    try:
        append(writer, "a", n=10)
        deadline = time.monotonic() + 5
        while parquet_rows(tmp_path) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert parquet_rows(tmp_path) == 10
    finally:
        writer.close()


def test_a_failed_write_keeps_the_records_and_the_writer_alive(tmp_path: Path) -> None:
    """Memory-only mode: the rows wait in memory while the directory cannot be written."""
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log directory should be")
    writer = PredictionLogWriter(blocked, flush_interval=0.05, write_ahead=False)
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


def wait_for_rows(directory: Path, rows: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (found := parquet_rows(directory)) < rows and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def test_the_timer_keeps_flushing_at_its_interval(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=0.2)
    try:
        started = time.monotonic()
        append(writer, "a")
        assert wait_for_rows(tmp_path, 1) == 1
        first = time.monotonic() - started
        append(writer, "b")
        assert wait_for_rows(tmp_path, 2) == 2
        assert len(list(tmp_path.rglob("part-*.parquet"))) == 2  # one file per flush that had rows
    finally:
        writer.close()
    assert first < 0.2 + 1.0  # one interval, plus slack for a loaded machine


def test_rows_are_written_whole_with_their_schema(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, start=False)
    before = datetime.now(UTC)
    writer.append(
        request_id="r",
        model="toy",
        version=3,
        route="canary",
        inputs=[{"x": 1.5, "c": "a"}, {"x": None, "c": "b"}],
        predictions=[0.25, 0.75],
        latency_ms=4.5,
    )
    assert writer.buffered_rows == 2
    assert writer.flush() == 2
    assert writer.flush() == 0
    writer.close()
    rows = read_prediction_log(tmp_path).to_pylist()
    assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
        {"request_id": "r", "row": 0, "model": "toy", "version": 3, "route": "canary",
         "inputs": '{"x": 1.5, "c": "a"}', "prediction": 0.25, "latency_ms": 4.5},
        {"request_id": "r", "row": 1, "model": "toy", "version": 3, "route": "canary",
         "inputs": '{"x": null, "c": "b"}', "prediction": 0.75, "latency_ms": 4.5},
    ]  # fmt: skip
    assert before <= rows[0]["time"] <= datetime.now(UTC) and rows[0]["time"] == rows[1]["time"]
    (day,) = {p.parent.name for p in tmp_path.rglob("part-*.parquet")}
    assert day == f"date={rows[0]['time']:%Y-%m-%d}"


def test_inputs_are_strict_json(tmp_path: Path) -> None:
    """NaN and infinities become null (JSON has no token for them); other values are written with str."""
    writer = PredictionLogWriter(tmp_path, start=False)
    at = datetime(2013, 1, 1, 5, tzinfo=UTC)
    inputs = [{"x": float("nan"), "y": [1.0, float("inf")], "z": {"w": -float("inf")}, "at": at, "ok": 2.0}]
    writer.append(request_id="r", model="m", version=1, route="direct", inputs=inputs, predictions=[0.5],
                  latency_ms=1.0)  # fmt: skip
    writer.close()
    text = read_prediction_log(tmp_path).column("inputs")[0].as_py()
    assert json.loads(text, parse_constant=pytest.fail) == {
        "x": None, "y": [1.0, None], "z": {"w": None}, "at": "2013-01-01 05:00:00+00:00", "ok": 2.0
    }  # fmt: skip


def test_rows_of_a_flush_that_spans_midnight_go_to_their_own_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PredictionLogWriter(tmp_path, start=False)
    for stamp, request_id in (("2013-01-01T23:59:59.999999", "before"), ("2013-01-02T00:00:00", "after")):
        ns = int(datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp() * 1_000_000) * 1000
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        append(writer, request_id)
    monkeypatch.undo()
    blocker = tmp_path / "date=2013-01-02"
    blocker.write_text("the second day cannot be written yet")
    with pytest.raises(FileExistsError):  # mkdir over a file
        writer.flush()
    assert writer.buffered_rows == 1  # only the day that failed is kept for the retry
    blocker.unlink()
    writer.close()
    files = sorted(tmp_path.rglob("part-*.parquet"))
    assert [p.parent.name for p in files] == ["date=2013-01-01", "date=2013-01-02"]
    assert [pq.read_table(p).column("request_id").to_pylist() for p in files] == [["before"], ["after"]]


def test_a_long_disk_failure_drops_the_oldest_rows_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log directory should be")
    writer = PredictionLogWriter(
        blocked, flush_interval=0.05, max_buffered_rows=4, max_pending_rows=6, write_ahead=False
    )
    try:
        with caplog.at_level(logging.ERROR, logger="mlprod.serve.prediction_log"):
            for i in range(10):
                append(writer, f"r{i}")
                assert writer.buffered_rows <= 6  # bounded at every step
            time.sleep(0.3)  # several failed retries
        assert writer.dropped_rows >= 4
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert f"cannot write to {blocked}" in messages
        assert "buffer full (6 rows) while writes fail: 4 oldest rows dropped" in messages
        blocked.unlink()
        assert wait_for_rows(blocked, 6) == 6
    finally:
        writer.close()
    kept = read_prediction_log(blocked).column("request_id").to_pylist()
    assert sorted(kept, key=lambda r: int(r[1:])) == [f"r{i}" for i in range(4, 10)]  # the newest six
    assert writer.dropped_rows == 4


def test_a_malformed_row_is_dropped_not_the_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = PredictionLogWriter(tmp_path, start=False)
    append(writer, "good")
    writer.append(request_id="bad", model=123, version=1, route="r", inputs=[{}], predictions=[0.5],  # type: ignore[arg-type]
                  latency_ms=1.0)  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert writer.flush() == 1
    writer.close()
    assert read_prediction_log(tmp_path).column("request_id").to_pylist() == ["good"]
    assert writer.dropped_rows == 1
    assert "dropped a malformed row of request 'bad'" in caplog.text


def test_appends_after_close_are_counted_as_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = PredictionLogWriter(tmp_path)
    writer.close()
    writer.close()  # twice is harmless
    with caplog.at_level(logging.WARNING):
        append(writer, "late", n=2)
    assert writer.dropped_rows == 2
    assert "2 row(s) of request late arrived after close" in caplog.text
    assert read_prediction_log(tmp_path).num_rows == 0


def test_a_failed_final_write_is_raised_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "log"
    blocked.write_text("not a directory")
    writer = PredictionLogWriter(blocked, start=False, write_ahead=False)
    append(writer, "r", n=3)
    with caplog.at_level(logging.ERROR), pytest.raises(NotADirectoryError):
        writer.close()
    assert "final write" in caplog.text and "3 row(s) lost" in caplog.text


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="flush_interval must be > 0 seconds, got 0"):
        PredictionLogWriter(tmp_path, flush_interval=0)
    with pytest.raises(InvalidInputError, match="max_buffered_rows must be >= 1, got 0"):
        PredictionLogWriter(tmp_path, max_buffered_rows=0)
    with pytest.raises(
        InvalidInputError, match=r"max_pending_rows \(5\) must be >= max_buffered_rows \(10\)"
    ):
        PredictionLogWriter(tmp_path, max_buffered_rows=10, max_pending_rows=5)
    with pytest.raises(InvalidInputError, match="fsync must be one of never, always, got 'sometimes'"):
        PredictionLogWriter(tmp_path, fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match='fsync = "always" needs write_ahead on'):
        PredictionLogWriter(tmp_path, fsync="always", write_ahead=False)
    writer = PredictionLogWriter(tmp_path, start=False)
    with pytest.raises(InvalidInputError, match=r"request 'r' has 2 input row\(s\) but 1 prediction\(s\)"):
        writer.append(request_id="r", model="m", version=1, route="r", inputs=[{}, {}], predictions=[0.5],
                      latency_ms=1.0)  # fmt: skip
    writer.close()
    assert read_prediction_log(tmp_path).num_rows == 0
