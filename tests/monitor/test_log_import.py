"""Importing another server's prediction log into a registered version's log: checked, idempotent."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from mlprod.errors import PredictionLogImportError
from mlprod.models import ModelVersion
from mlprod.monitor.log_import import LogColumns, import_log
from mlprod.monitor.log_source import logged_rows
from mlprod.serve import read_prediction_log
from mlprod.workspace import Workspace

START = datetime(2024, 5, 1, tzinfo=UTC)
COLUMNS = LogColumns(time="at", prediction="score", request_id="rid")


def foreign_log(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """What another server logged: a request id, a time, the inputs ``x`` and ``c``, the score."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "rid": [f"req-{i // 2}" for i in range(n)],  # two rows per request
            "at": [START + timedelta(minutes=i // 2) for i in range(n)],
            "x": rng.normal(size=n),
            "c": rng.choice(["a", "b"], size=n),
            "score": rng.uniform(size=n),
            "host": "edge-1",
        }
    )


def test_imported_rows_read_back_like_served_ones(
    workspace: Workspace, registered: ModelVersion, tmp_path: Path
) -> None:
    frame = foreign_log()
    frame.to_parquet(tmp_path / "log.parquet")
    report = import_log(workspace.prediction_log_dir, registered, tmp_path / "log.parquet", COLUMNS)
    assert (report.rows, report.written, report.requests, report.skipped_requests) == (40, 40, 20, 0)
    log = read_prediction_log(workspace.prediction_log_dir).sort_by(
        [("request_id", "ascending"), ("row", "ascending")]
    )
    assert set(log.column("model").to_pylist()) == {"toy"} and set(log.column("route").to_pylist()) == {
        "imported"
    }
    first = frame[frame["rid"] == "req-0"]
    rows = log.filter(pc.equal(log.column("request_id"), "req-0"))
    assert rows.column("row").to_pylist() == [0, 1]
    assert rows.column("prediction").to_pylist() == pytest.approx(first["score"].tolist())
    batches = list(
        logged_rows(workspace.prediction_log_dir, model="toy", version=1, numeric=["x"], categorical=["c"])
    )
    read = pd.concat([b.to_pandas() for b in batches])
    assert len(read) == 40
    assert sorted(read["x"]) == pytest.approx(sorted(frame["x"]))  # the inputs came through the JSON
    assert read["time"].min() == START


def test_importing_the_same_file_again_adds_nothing(
    workspace: Workspace, registered: ModelVersion, tmp_path: Path
) -> None:
    frame = foreign_log()
    frame.to_csv(tmp_path / "log.csv", index=False)
    first = import_log(workspace.prediction_log_dir, registered, tmp_path / "log.csv", COLUMNS)
    again = import_log(workspace.prediction_log_dir, registered, tmp_path / "log.csv", COLUMNS)
    assert (first.written, again.written, again.skipped_requests) == (40, 0, 20)
    more = pd.concat([frame, foreign_log(4, seed=1).assign(rid=["new-0", "new-0", "new-1", "new-1"])])
    more.to_json(tmp_path / "more.jsonl", orient="records", lines=True, date_format="iso")
    grown = import_log(workspace.prediction_log_dir, registered, tmp_path / "more.jsonl", COLUMNS)
    assert (grown.written, grown.skipped_requests) == (4, 20)
    assert read_prediction_log(workspace.prediction_log_dir).num_rows == 44


def test_without_request_ids_the_rows_content_keeps_imports_idempotent(
    workspace: Workspace, registered: ModelVersion, tmp_path: Path
) -> None:
    foreign_log().drop(columns="rid").to_parquet(tmp_path / "log.parquet")
    columns = LogColumns(time="at", prediction="score")
    assert (
        import_log(workspace.prediction_log_dir, registered, tmp_path / "log.parquet", columns).written == 40
    )
    assert (
        import_log(workspace.prediction_log_dir, registered, tmp_path / "log.parquet", columns).written == 0
    )


@pytest.mark.parametrize(
    ("change", "columns", "message"),
    [
        ({"score": None}, COLUMNS, "import: no prediction column 'score'"),
        ({}, LogColumns(time="at", prediction="scores", request_id="rid"),
         "no prediction column 'scores' (did you mean 'score'?)"),
        ({"x": None}, COLUMNS, "the model's input column(s) x are not in the file"),
        ({"score": 1.5}, COLUMNS,
         "prediction column 'score' has 40 value(s) missing or outside [0, 1] (e.g. 1.5)"),
        ({"score": "high"}, COLUMNS, "column 'score' (large_string) must hold numbers"),
        ({"at": "yesterday"}, COLUMNS, "time column 'at' (large_string) does not read as times"),
        ({"at": None}, COLUMNS, "import: no time column 'at'"),
        ({"rid": "same"}, COLUMNS, "request id 'same' is on rows with different times"),
    ],
)  # fmt: skip
def test_a_bad_log_is_refused_before_anything_is_written(
    workspace: Workspace,
    registered: ModelVersion,
    tmp_path: Path,
    change: dict[str, object],
    columns: LogColumns,
    message: str,
) -> None:
    frame = foreign_log()
    for column, value in change.items():
        if value is None:
            del frame[column]
        else:
            frame[column] = value
    frame.to_parquet(tmp_path / "log.parquet")
    with pytest.raises(PredictionLogImportError, match=re.escape(message)):
        import_log(workspace.prediction_log_dir, registered, tmp_path / "log.parquet", columns)
    assert read_prediction_log(workspace.prediction_log_dir).num_rows == 0


def test_an_empty_log_is_refused(workspace: Workspace, registered: ModelVersion, tmp_path: Path) -> None:
    foreign_log().iloc[:0].to_parquet(tmp_path / "log.parquet")
    with pytest.raises(PredictionLogImportError, match="import: the file has no rows"):
        import_log(workspace.prediction_log_dir, registered, tmp_path / "log.parquet", COLUMNS)
