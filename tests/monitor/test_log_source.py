from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.monitor.log_source import LabelSource, logged_rows
from mlprod.serve import PredictionLogWriter

START = datetime(2013, 7, 1, tzinfo=UTC)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    writer = PredictionLogWriter(tmp_path / "log", flush_interval=3600)
    for i in range(6):  # written out of time order: the reader sorts
        writer.append(
            request_id=f"r{i}", model="m", version=1 + i % 2, route="shadow" if i == 4 else "champion",
            inputs=[{"distance": 100.0 * i, "carrier": "UA" if i % 3 else None, "extra": True}],
            predictions=[i / 10], latency_ms=1.0, at=START + timedelta(hours=10 - i),
        )  # fmt: skip
    writer.append(
        request_id="nan", model="m", version=1, route="champion",
        inputs=[{"distance": float("nan"), "carrier": "AA"}], predictions=[0.5], latency_ms=1.0,
        at=START + timedelta(hours=20),
    )  # fmt: skip
    writer.close()
    return tmp_path / "log"


def _read(log_dir: Path, **options: object) -> pa.Table:
    batches = list(logged_rows(log_dir, model="m", version=1, numeric=["distance"], categorical=["carrier"],
                               **options))  # type: ignore[arg-type]  # fmt: skip
    return pa.concat_tables(batches)


def test_features_come_out_of_the_json_typed_and_in_time_order(log_dir: Path) -> None:
    rows = _read(log_dir)
    assert rows.column_names == ["time", "distance", "carrier", "prediction", "label"]
    assert rows.column("distance").to_pylist() == [400.0, 200.0, 0.0, None]
    assert rows.column("carrier").to_pylist() == ["UA", "UA", None, "AA"]
    assert rows.column("prediction").to_pylist() == [0.4, 0.2, 0.0, 0.5]
    assert rows.column("label").null_count == 4
    assert rows.schema.field("distance").type == pa.float64()


def test_labels_join_by_request_id_and_routes_and_range_filter(log_dir: Path) -> None:
    labels = pa.table({"request_id": ["r0", "r2", "nobody"], "delayed": [True, False, True]})
    rows = _read(log_dir, labels=LabelSource(labels, column="delayed"))
    assert rows.column("label").to_pylist() == [None, 0.0, 1.0, None]
    assert _read(log_dir, routes=["champion"]).column("distance").to_pylist() == [200.0, 0.0, None]
    window = _read(log_dir, since=START + timedelta(hours=8), until=START + timedelta(hours=20))
    assert window.column("prediction").to_pylist() == [0.2, 0.0]


def test_batches_are_bounded(log_dir: Path) -> None:
    batches = list(logged_rows(log_dir, model="m", version=1, numeric=["distance"], categorical=[],
                               batch_rows=3))  # fmt: skip
    assert sum(b.num_rows for b in batches) == 4
    assert max(b.num_rows for b in batches) <= 3


def test_missing_log_or_rows_or_naive_times_are_clear_errors(log_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no prediction log"):
        list(logged_rows(tmp_path / "none", model="m", version=1, numeric=[], categorical=[]))
    with pytest.raises(NotFoundError, match="no rows of m/9"):
        list(logged_rows(log_dir, model="m", version=9, numeric=[], categorical=[]))
    with pytest.raises(InvalidInputError, match="time zone"):
        _read(log_dir, since=datetime(2013, 7, 1))
    with pytest.raises(InvalidInputError, match="is not before --until"):
        _read(log_dir, since=START + timedelta(hours=9), until=START + timedelta(hours=9))
    text_labels = LabelSource(pa.table({"request_id": ["r0", "r2"], "late": ["yes", None]}), column="late")
    with pytest.raises(InvalidInputError, match=r"column 'late' must hold 0/1 or booleans.*'yes'"):
        _read(log_dir, labels=text_labels)
    two = LabelSource(pa.table({"request_id": ["r0"], "late": [2]}), column="late")
    with pytest.raises(InvalidInputError, match="column 'late' must hold 0/1"):
        _read(log_dir, labels=two)


def test_any_feature_name_is_read_safely(tmp_path: Path) -> None:
    names = ["it's", 'a"b', "a\\b", "x[0]", "é ü", "a'); DROP TABLE log; --"]
    writer = PredictionLogWriter(tmp_path, flush_interval=3600)
    row = {n: i for i, n in enumerate(names)}
    writer.append(request_id="r", model="m", version=1, route="champion", inputs=[row], predictions=[0.5],
                  latency_ms=1.0, at=START)  # fmt: skip
    writer.close()
    rows = pa.concat_tables(list(logged_rows(tmp_path, model="m", version=1, numeric=names, categorical=[])))
    assert [rows.column(n)[0].as_py() for n in names] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_prediction_times_must_be_aware(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, flush_interval=3600)
    with pytest.raises(InvalidInputError, match="time zone"):
        writer.append(request_id="r", model="m", version=1, route="champion", inputs=[{}],
                      predictions=[0.1], latency_ms=1.0, at=datetime(2013, 7, 1))  # fmt: skip
    writer.close()


def test_rows_still_in_a_write_ahead_segment_are_read_with_the_files(log_dir: Path) -> None:
    writer = PredictionLogWriter(log_dir, start=False)  # a live server between two flushes
    writer.append(request_id="live", model="m", version=1, route="champion",
                  inputs=[{"distance": 900.0, "carrier": "B6"}], predictions=[0.9], latency_ms=1.0,
                  at=START + timedelta(hours=30))  # fmt: skip
    rows = _read(log_dir)
    assert rows.column("distance").to_pylist() == [400.0, 200.0, 0.0, None, 900.0]
    assert rows.column("carrier").to_pylist()[-1] == "B6"
    labels = pa.table({"request_id": ["live"], "delayed": [True]})
    assert _read(log_dir, labels=LabelSource(labels, column="delayed")).column("label").to_pylist()[-1] == 1.0
    writer.close()
    assert _read(log_dir).column("distance").to_pylist() == [400.0, 200.0, 0.0, None, 900.0]  # once


def test_a_log_of_segments_alone_is_read(tmp_path: Path) -> None:
    writer = PredictionLogWriter(tmp_path, start=False)
    writer.append(request_id="only", model="m", version=1, route="champion",
                  inputs=[{"distance": 1.0, "carrier": "UA"}], predictions=[0.1], latency_ms=1.0)  # fmt: skip
    assert _read(tmp_path).column("prediction").to_pylist() == [0.1]
    writer.close()
