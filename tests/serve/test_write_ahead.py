"""Write-ahead segments: on disk before ``append`` returns, converted to Parquet once, recovered after a
crash, read by readers meanwhile; fsync with group commit.

``test_prediction_log_crash.py`` kills a real server under load with SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mlprod.errors import PredictionLogError
from mlprod.models import ModelVersion
from mlprod.serve import BackgroundServer, PredictionLogWriter, create_app, read_prediction_log, write_ahead
from mlprod.serve.prediction_log import recover_segments
from mlprod.workspace import Workspace


def append(writer: PredictionLogWriter, request_id: str, n: int = 1) -> int:
    return writer.append(request_id=request_id, model="m", version=1, route="champion",
                         inputs=[{"x": i, "s": "a\nb"} for i in range(n)], predictions=[0.5] * n,
                         latency_ms=1.0)  # fmt: skip


def parquet_ids(directory: Path) -> list[str]:
    files = sorted(directory.rglob("part-*.parquet"))
    return [i for f in files for i in pq.read_table(f).column("request_id").to_pylist()]


def dead_writer(directory: Path, requests: list[tuple[str, int]], at: datetime | None = None) -> Path:
    """A segment as a writer that died leaves it: its records, no lock held."""
    segment = write_ahead.Segment(directory / write_ahead.WAL_DIR)
    for request_id, n in requests:
        time_us = int((at or datetime.now(UTC)).timestamp() * 1_000_000)
        records = [(request_id, i, time_us, "m", 1, "champion", f'{{"x": {i}}}', 0.25, 1.0) for i in range(n)]
        segment.append(write_ahead.encode(records))
    segment.close()  # releases the flock, as the death of its process does
    return segment.path


def test_append_is_on_disk_before_it_returns_and_the_segment_goes_after_the_flush(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, start=False)
    append(writer, "r1", n=2)
    (segment,) = write_ahead.segment_paths(tmp_path)
    decoded = write_ahead.decode(segment.read_bytes())
    assert [(r[0], r[1], r[6]) for r in decoded.records] == [
        ("r1", 0, '{"x": 0, "s": "a\\nb"}'), ("r1", 1, '{"x": 1, "s": "a\\nb"}')
    ]  # fmt: skip
    assert decoded.ignored_bytes == 0
    assert writer.flush() == 2
    assert write_ahead.segment_paths(tmp_path) == []
    (part,) = tmp_path.rglob("part-*.parquet")
    assert part.name == f"part-{write_ahead.segment_id(segment)}.parquet"  # named by its segment
    writer.close()
    assert read_prediction_log(tmp_path).column("request_id").to_pylist() == ["r1", "r1"]


def test_a_mapped_segment_holds_records_across_its_chunks_and_is_cut_to_them_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_ahead, "CHUNK_BYTES", 8192)  # records straddle the mapped ranges
    segment = write_ahead.Segment(tmp_path)
    frames = [
        write_ahead.encode([(f"r{i}", 0, 1, "m", 1, "champion", '{"s": "' + "x" * (i * 97) + '"}', 0.5, 1.0)])
        for i in range(60)
    ]  # the largest (~5.8 KB) and several together exceed a chunk
    big = write_ahead.encode([("big", j, 1, "m", 1, "champion", '{"x": 1}', 0.5, 1.0) for j in range(3000)])
    for frame in [*frames, big]:
        segment.append(frame)
    written = b"".join([*frames, big])
    on_disk = segment.path.read_bytes()  # what a process reads while the writer lives (or after kill -9)
    assert len(on_disk) > len(written) and on_disk.startswith(written)  # reserved zeros after the records
    decoded = write_ahead.decode(on_disk)
    assert [r[0] for r in decoded.records] == [f"r{i}" for i in range(60)] + ["big"] * 3000
    assert (decoded.good_bytes, decoded.ignored_bytes) == (len(written), 0)  # the zeros are not a torn record
    segment.close()
    assert segment.path.read_bytes() == written  # cut to its records: appending after it stays readable


def test_a_torn_record_before_the_reserved_zeros_is_reported(tmp_path: Path) -> None:
    segment = write_ahead.Segment(tmp_path)
    frame = write_ahead.encode([("a", 0, 1, "m", 1, "champion", "{}", 0.5, 1.0)])
    segment.append(frame)
    segment.append(frame[:6])  # as a process killed in the middle of copying its next record leaves it
    decoded = write_ahead.decode(segment.path.read_bytes())
    assert [r[0] for r in decoded.records] == ["a"]
    assert (decoded.good_bytes, decoded.ignored_bytes) == (len(frame), 6)
    segment.close()


def test_the_header_is_the_json_of_its_values() -> None:
    records = [
        ('a"\\\udc80é\n', 0, 1_700_000_000_000_000, "m\u2028", 7, "canary", '{"x": 1}', float("nan"), 0.125),
        ('a"\\\udc80é\n', 1, 1_700_000_000_000_000, "m\u2028", 7, "canary", "{}", float("-inf"), 0.125),
        ('a"\\\udc80é\n', 2, 1_700_000_000_000_000, "m\u2028", 7, "canary", "{}", 1e-300, 0.125),
    ]
    frame = write_ahead.encode(records)
    header = frame[8:].split(b"\n", 1)[0].decode("ascii")
    assert header == (
        '["a\\"\\\\\\udc80\\u00e9\\n",1700000000000000,"m\\u2028",7,"canary",0.125,[NaN,-Infinity,1e-300]]'
    )
    decoded = write_ahead.decode(frame).records
    assert [r[:7] for r in decoded] == [r[:7] for r in records]
    assert decoded[2][7] == 1e-300 and decoded[1][7] == float("-inf")


def test_a_segment_that_cannot_be_written_refuses_the_append(tmp_path: Path) -> None:
    blocked = tmp_path / "log"
    blocked.write_text("a file where the log directory should be")
    writer = PredictionLogWriter(blocked, start=False)
    refused = r"cannot write request 'r' to .*_wal .*the answer is not sent"
    with pytest.raises(PredictionLogError, match=refused):
        append(writer, "r")
    assert writer.buffered_rows == 0  # nothing kept that was not written
    blocked.unlink()
    append(writer, "r2")  # the directory is back: the next append opens a segment
    writer.close()
    assert read_prediction_log(blocked).column("request_id").to_pylist() == ["r2"]


def test_segments_of_a_dead_writer_are_recovered_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = dead_writer(tmp_path, [("a", 1), ("b", 2)])
    with path.open("ab") as out:  # a torn last record: its header promises more than was written
        out.write(struct.pack("<II", 500, 0) + b'["c", 1')
    assert sorted(read_prediction_log(tmp_path).column("request_id").to_pylist()) == ["a", "b", "b"]
    with caplog.at_level(logging.WARNING):
        writer = PredictionLogWriter(tmp_path, flush_interval=3600)  # its thread recovers first
        writer.close()
    assert sorted(parquet_ids(tmp_path)) == ["a", "b", "b"]
    assert write_ahead.segment_paths(tmp_path) == []
    assert f"recovered 3 row(s) from {path.name}" in caplog.text
    assert "15 byte(s) of a torn last record ignored" in caplog.text
    assert recover_segments(tmp_path) == 0  # nothing left to do


def test_recovery_after_a_crash_between_parquet_and_delete_writes_nothing_twice(tmp_path: Path) -> None:
    day1, day2 = datetime(2013, 1, 1, 12, tzinfo=UTC), datetime(2013, 1, 2, 12, tzinfo=UTC)
    path = dead_writer(tmp_path, [("d1", 1)], at=day1)
    with path.open("ab") as out:  # the same segment also holds a request of the next day
        time_us = int(day2.timestamp() * 1_000_000)
        out.write(write_ahead.encode([("d2", 0, time_us, "m", 1, "champion", "{}", 0.5, 1.0)]))
    # The writer died after renaming the first day's file into place, before the second day's.
    first_day = read_prediction_log(tmp_path).filter(pc.equal(pc.field("request_id"), "d1"))
    (tmp_path / "date=2013-01-01").mkdir()
    pq.write_table(first_day, tmp_path / "date=2013-01-01" / f"part-{write_ahead.segment_id(path)}.parquet")
    assert sorted(read_prediction_log(tmp_path).column("request_id").to_pylist()) == ["d1", "d2"]
    assert recover_segments(tmp_path) == 1  # only the second day is written now
    assert sorted(parquet_ids(tmp_path)) == ["d1", "d2"]
    assert write_ahead.segment_paths(tmp_path) == []


def test_a_live_writers_segment_is_left_alone_by_recovery(tmp_path: Path) -> None:
    live = PredictionLogWriter(tmp_path, start=False)
    append(live, "live")
    assert recover_segments(tmp_path) == 0  # its flock says a writer holds it
    assert len(write_ahead.segment_paths(tmp_path)) == 1
    assert read_prediction_log(tmp_path).column("request_id").to_pylist() == ["live"]
    live.close()
    assert parquet_ids(tmp_path) == ["live"]


def test_readers_see_each_row_once_while_segments_are_converted(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, start=False)
    for i in range(50):
        append(writer, f"r{i}")
        if i % 10 == 9:
            writer.flush()
        ids = read_prediction_log(tmp_path).column("request_id").to_pylist()
        assert sorted(ids) == sorted(f"r{j}" for j in range(i + 1))
    writer.close()


def test_rows_past_the_memory_bound_are_released_and_reread_from_their_segment(tmp_path: Path) -> None:
    blocked = tmp_path
    writer = PredictionLogWriter(blocked, start=False, max_buffered_rows=2, max_pending_rows=3)
    day_dir = blocked / f"date={datetime.now(UTC):%Y-%m-%d}"
    day_dir.write_text("a file where the day's directory should be")
    for i in range(3):
        append(writer, f"r{i}", n=2)
        with pytest.raises(FileExistsError):
            writer.flush()  # seals a segment per call, none can be converted
    assert writer.buffered_rows == 6 and writer.dropped_rows == 0
    assert sum(len(b.records or []) for b in writer._pending) <= 3  # memory bounded, rows still on disk
    day_dir.unlink()
    writer.close()
    assert sorted(parquet_ids(blocked)) == sorted(f"r{i}" for i in range(3) for _ in range(2))


def test_fsync_always_group_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(write_ahead.os, "fsync", counting_fsync)
    writer = PredictionLogWriter(tmp_path, fsync="always", flush_interval=3600)

    async def requests() -> None:
        async def one(i: int) -> None:
            await asyncio.sleep(0)
            await writer.synced(append(writer, f"r{i}"))

        await asyncio.gather(*(one(i) for i in range(200)))

    asyncio.run(requests())
    assert writer._synced_seq == 200
    assert 1 <= len(calls) < 200  # concurrent requests shared fsyncs
    writer.close()
    assert len(parquet_ids(tmp_path)) == 200


def test_kill_9_of_a_writer_loses_no_returned_append(tmp_path: Path) -> None:
    """Every append that returned before SIGKILL is read back, with no duplicate, in three kills (the
    server under load is killed ten times in test_prediction_log_crash.py)."""
    script = textwrap.dedent(f"""
        import sys
        from mlprod.serve import PredictionLogWriter
        w = PredictionLogWriter({str(tmp_path)!r}, flush_interval=0.05, max_buffered_rows=300)
        i = 0
        while True:
            w.append(request_id=f"{{sys.argv[1]}}-{{i}}", model="m", version=1, route="r",
                     inputs=[{{"i": i}}], predictions=[0.1], latency_ms=1.0)
            print(i, flush=True)
            i += 1
    """)
    for kill in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script, f"k{kill}"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        last = -1
        for line in proc.stdout:
            last = int(line)
            if last >= 500 + 100 * kill:
                break
        proc.kill()
        proc.wait()
        returned = {f"k{kill}-{i}" for i in range(last + 1)}
        logged = read_prediction_log(tmp_path).column("request_id").to_pylist()
        ids = [i for i in logged if i.startswith(f"k{kill}-")]
        assert len(ids) == len(set(ids))
        assert returned <= set(ids), sorted(returned - set(ids))[:5]
    recover_segments(tmp_path)
    assert write_ahead.segment_paths(tmp_path) == []
    ids = parquet_ids(tmp_path)
    assert len(ids) == len(set(ids))


def test_a_server_with_fsync_always_answers_after_the_fsync(
    workspace: Workspace, registered: ModelVersion
) -> None:
    synced_before_answer: list[bool] = []
    workspace.config.prediction_log.fsync = "always"
    app = create_app(workspace)
    writer = app.state.service.prediction_log
    assert writer.fsync == "always"
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
        for i in range(5):
            body = {"id": f"f{i}", "rows": [{"x": 0.1, "c": "a"}]}
            response = client.post("/v1/models/toy@champion/predict", json=body)
            assert response.status_code == 200
            synced_before_answer.append(writer._synced_seq >= i + 1)
    assert synced_before_answer == [True] * 5
    logged = read_prediction_log(workspace.prediction_log_dir).column("request_id").to_pylist()
    assert sorted(logged) == [f"f{i}" for i in range(5)]
