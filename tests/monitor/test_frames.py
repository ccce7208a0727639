"""Monitoring a model mlprod does not run: reference and analysis data with its scores and labels."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from mlprod.errors import MonitorColumnError, MonitorDataError, WindowSpecError
from mlprod.monitor import FrameColumns, ProfileSpec, monitor_frames, reference_of_rows, write_html

START = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = FrameColumns(score="proba", label="y", timestamp="ts")


def scored(n: int, seed: int, *, shift: float = 0.0, start: datetime = START) -> pd.DataFrame:
    """Features, a model's score, a label that follows it, a batch id and an hourly timestamp."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n) + shift
    color = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    proba = 1 / (1 + np.exp(-(1.5 * x + np.where(color == "red", 0.5, -0.5))))
    y = (rng.random(n) < proba).astype(np.int64)
    return pd.DataFrame(
        {
            "x": x,
            "color": color,
            "proba": proba,
            "y": y,
            "batch": np.arange(n) // 250,
            "ts": [start + timedelta(hours=i) for i in range(n)],
        }
    )


def drifted(run_window: object, column: str) -> bool:
    return any(c.column == column and c.kind == "drift" and c.alert for c in run_window.checks)  # type: ignore[attr-defined]


def test_a_planted_shift_is_flagged_in_the_shifted_chunk_only() -> None:
    analysis = pd.concat([scored(1000, 2), scored(1000, 3, shift=1.5)], ignore_index=True)
    run = monitor_frames(scored(2000, 1), analysis, COLUMNS, window="chunks:2")
    calm, shifted = run.result.windows
    assert (calm.rows, shifted.rows) == (1000, 1000)
    assert drifted(shifted, "x") and not drifted(calm, "x")
    assert not drifted(shifted, "color")
    assert run.features == ("x", "batch", "color") and run.result.by == "2 chunks"
    assert any(a.column == "x" for a in run.alerts)


def test_realized_performance_is_sklearn_on_the_labelled_rows_of_each_window() -> None:
    analysis = scored(1000, 4)
    late = np.random.default_rng(5).random(1000) < 0.3  # labels not arrived yet
    analysis["y"] = analysis["y"].astype("Int64").mask(late)
    run = monitor_frames(scored(2000, 1), analysis, COLUMNS, window="by:batch")
    assert [w.name for w in run.result.windows] == ["batch 0", "batch 1", "batch 2", "batch 3"]
    for index, window in enumerate(run.result.windows):
        rows = analysis[(analysis["batch"] == index) & analysis["y"].notna()]
        y, p = rows["y"].astype(int), rows["proba"]
        points = {p.metric: p for p in window.performance}
        assert points["accuracy"].labelled_rows == len(rows)
        assert points["accuracy"].realized == pytest.approx(accuracy_score(y, p >= 0.5), abs=1e-12)
        assert points["roc_auc"].realized == pytest.approx(roc_auc_score(y, p), abs=2e-3)
        assert points["accuracy"].estimated is not None  # calibrated on the labelled reference


def test_every_kind_of_source_gives_the_same_windows(tmp_path: Path) -> None:
    reference, analysis = scored(600, 1), scored(900, 2, shift=0.5)
    pq.write_table(pa.Table.from_pandas(reference), tmp_path / "reference.parquet")
    for part, rows in enumerate((analysis[:400], analysis[400:])):
        pq.write_table(
            pa.Table.from_pandas(rows, preserve_index=False), tmp_path / f"analysis-{part}.parquet"
        )
        pv.write_csv(pa.Table.from_pandas(rows, preserve_index=False), tmp_path / f"analysis-{part}.csv")
    analyses = [
        analysis,
        pa.Table.from_pandas(analysis, preserve_index=False),
        str(tmp_path / "analysis-*.parquet"),
        [tmp_path / "analysis-0.csv", tmp_path / "analysis-1.csv"],
    ]
    summaries = []
    for source in analyses:
        run = monitor_frames(tmp_path / "reference.parquet", source, COLUMNS, window="300")
        summaries.append(
            [
                (w.rows, round(next(c.statistic for c in w.checks if c.column == "x"), 9))
                for w in run.result.windows
            ]
        )
    assert summaries[0] == summaries[1] == summaries[2] == summaries[3]
    assert [rows for rows, _ in summaries[0]] == [300, 300, 300]


def test_calendar_windows_come_from_the_timestamp_column() -> None:
    analysis = scored(24 * 200, 2, start=datetime(2024, 2, 10, tzinfo=UTC))  # 200 days from 10 February
    run = monitor_frames(scored(500, 1), analysis, COLUMNS, window="quarter")
    starts = [w.start for w in run.result.windows]
    assert starts == [datetime(2024, m, 1, tzinfo=UTC) for m in (1, 4, 7)]
    days = [(w.end - w.start).days for w in run.result.windows]
    assert days == [91, 91, 92]
    assert sum(w.rows for w in run.result.windows) == len(analysis)
    assert not any(w.partial for w in run.result.windows)  # the analysis data is taken as complete


def test_row_windows_mark_the_short_last_one_partial_and_name_rows() -> None:
    run = monitor_frames(
        scored(500, 1), scored(700, 2), FrameColumns(score="proba", label="y"), window="rows:300"
    )
    assert [(w.rows, w.partial, w.name) for w in run.result.windows] == [
        (300, False, "rows 0-299"), (300, False, "rows 300-599"), (100, True, "rows 600-899")
    ]  # fmt: skip


def test_a_predicted_class_alone_is_enough_for_realized_accuracy() -> None:
    analysis = scored(800, 2)
    analysis["predicted"] = (analysis["proba"] >= 0.5).astype(int)
    reference = scored(800, 1)
    reference["predicted"] = (reference["proba"] >= 0.5).astype(bool)
    columns = FrameColumns(prediction="predicted", label="y", features=("x", "color"))
    window = monitor_frames(reference, analysis, columns, window="chunks:1").result.windows[0]
    accuracy = next(p for p in window.performance if p.metric == "accuracy")
    assert accuracy.realized == pytest.approx(accuracy_score(analysis["y"], analysis["predicted"]))


def test_labels_missing_from_the_analysis_leave_only_the_estimate() -> None:
    run = monitor_frames(scored(800, 1), scored(400, 2).drop(columns="y"), COLUMNS, window="chunks:1")
    accuracy = next(p for p in run.result.windows[0].performance if p.metric == "accuracy")
    assert accuracy.realized is None and accuracy.labelled_rows == 0
    assert accuracy.estimated is not None and accuracy.lower is not None


def test_the_html_report_names_the_windows(tmp_path: Path) -> None:
    run = monitor_frames(scored(600, 1), scored(600, 2, shift=2.0), COLUMNS, window="by:batch")
    path = write_html(run.result, tmp_path / "report.html", title="Monitoring report: churn", rules=run.rules)
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "batch 2" in page and "Monitoring report: churn" in page


def _bad(**changes: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference, analysis = scored(300, 1), scored(300, 2)
    for key, value in changes.items():
        frame = reference if key.startswith("ref_") else analysis
        column = key.removeprefix("ref_")
        if value is None:
            del frame[column]
        else:
            frame[column] = value
    return reference, analysis


@pytest.mark.parametrize(
    ("changes", "columns", "window", "error", "message"),
    [
        ({}, {"label": "y"}, "rows:100", MonitorColumnError,
         "name the model's output: a score column (probability of class 1, e.g. --score proba)"),
        ({"proba": None}, {"score": "proba"}, "rows:100", MonitorColumnError,
         "analysis: no score column 'proba'"),
        ({}, {"score": "probab"}, "rows:100", MonitorColumnError,
         "reference: no score column 'probab' (did you mean 'proba'?)"),
        ({"proba": "high"}, {"score": "proba"}, "rows:100", MonitorColumnError,
         "analysis: score column 'proba' is text; it must hold a probability of class 1 in [0, 1]"),
        ({"proba": np.nan}, {"score": "proba"}, "rows:100", MonitorColumnError,
         "analysis: column 'proba' (the model's score) has no value in any row"),
        ({"proba": 3.5}, {"score": "proba"}, "rows:100", MonitorColumnError,
         "analysis: score column 'proba' has 300 value(s) outside [0, 1], e.g. 3.5"),
        ({"y": 2}, {"score": "proba", "label": "y"}, "rows:100", MonitorColumnError,
         "analysis: label column 'y' must hold 0/1 or booleans (null: not known yet), got e.g. 2"),
        ({"y": "yes"}, {"score": "proba", "label": "y"}, "rows:100", MonitorColumnError,
         "analysis: label column 'y' is text; it must hold 0/1 or booleans (map the positive class to 1)"),
        ({"ref_y": None}, {"score": "proba", "label": "y"}, "rows:100", MonitorColumnError,
         "reference: no label column 'y'"),
        ({"extra": 1.0}, {"score": "proba"}, "rows:100", MonitorDataError,
         "reference and analysis have different feature columns (only in the analysis: extra)"),
        ({"color": None}, {"score": "proba"}, "rows:100", MonitorDataError,
         "different feature columns (missing from the analysis: color)"),
        ({"x": "text"}, {"score": "proba"}, "rows:100", MonitorColumnError,
         "feature column 'x' is numeric in the reference but categorical in the analysis"),
        ({}, {"score": "proba"}, "month", WindowSpecError,
         "window month: calendar windows need each row's time; name the timestamp column (--timestamp COL)"),
        ({"ts": [None] * 5 + [START] * 295}, {"score": "proba", "timestamp": "ts"}, "day", MonitorColumnError,
         "analysis: timestamp column 'ts' has 5 null(s)"),
        ({"ts": 17}, {"score": "proba", "timestamp": "ts"}, "day", MonitorColumnError,
         "analysis: timestamp column 'ts' is int64; give timestamps, dates or ISO-8601 text"),
        ({}, {"score": "proba"}, "by:bach", WindowSpecError,
         "window by:bach: the analysis data has no column 'bach' (did you mean 'batch'?)"),
        ({"predicted": 1}, {"score": "proba", "prediction": "predicted"}, "rows:100", MonitorColumnError,
         "reference: no prediction column 'predicted'"),
        ({"ref_predicted": 1, "predicted": 1}, {"score": "proba", "prediction": "predicted"}, "rows:100",
         MonitorColumnError, "prediction column 'predicted' disagrees with score >= 0.5 in"),
        ({"ref_label": 1, "label": 1}, {"score": "proba"}, "rows:100", MonitorColumnError,
         "feature column 'label' has a name monitoring keeps for its own label column"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_message_naming_the_column_and_the_fix(
    changes: dict[str, object], columns: dict[str, str], window: str, error: type[Exception], message: str
) -> None:
    reference, analysis = _bad(**changes)
    with pytest.raises(error, match=re.escape(message)):
        monitor_frames(reference, analysis, FrameColumns(**columns), window=window)  # type: ignore[arg-type]


def test_an_empty_analysis_file_is_refused(tmp_path: Path) -> None:
    empty = pa.Table.from_pandas(scored(10, 2), preserve_index=False).slice(0, 0)
    pq.write_table(empty, tmp_path / "analysis.parquet")
    with pytest.raises(MonitorDataError, match=r"analysis: the data has no rows"):
        monitor_frames(scored(100, 1), tmp_path / "analysis.parquet", COLUMNS, window="rows:10")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.parquet", "is not a file, a directory or a glob that matches files"),
        ("nothing-*.parquet", "no file matches"),
        ("data.xlsx", "is not a .parquet, .csv or .jsonl file"),
    ],
)
def test_unreadable_sources_are_refused(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(MonitorDataError, match=re.escape(message)):
        monitor_frames(scored(100, 1), tmp_path / source, COLUMNS, window="rows:10")


def test_fairness_per_window_is_the_gap_in_rates_between_groups() -> None:
    analysis = scored(1200, 6)
    rng = np.random.default_rng(7)
    analysis["sex"] = rng.choice(["f", "m"], size=1200)
    analysis.loc[analysis["sex"] == "f", "proba"] *= 0.6  # the model selects women less often
    columns = FrameColumns(score="proba", label="y", groups=("sex",), ignore=("ts",))
    run = monitor_frames(scored(1000, 1), analysis, columns, window="chunks:3")
    reports = run.fairness["sex"]
    assert len(reports) == 3 and all(r is not None for r in reports)
    for index, report in enumerate(reports):
        rows = analysis.iloc[index * 400 : (index + 1) * 400]
        selected = rows["proba"] >= 0.5
        rates = selected.groupby(rows["sex"]).mean()
        assert report is not None
        assert report.demographic_parity_difference.value == pytest.approx(rates.max() - rates.min())
        tpr = selected[rows["y"] == 1].groupby(rows["sex"]).mean()
        fpr = selected[rows["y"] == 0].groupby(rows["sex"]).mean()
        expected = max(tpr.max() - tpr.min(), fpr.max() - fpr.min())
        assert report.equalized_odds_difference.value == pytest.approx(expected)
    assert "sex" not in run.features  # only in the analysis: a group, not a feature


def test_fairness_needs_labels_and_groups_large_enough() -> None:
    with pytest.raises(MonitorColumnError, match="fairness per group compares decisions with labels"):
        FrameColumns(score="proba", groups=("sex",))
    columns = FrameColumns(score="proba", label="y", groups=("sexe",))
    with pytest.raises(MonitorColumnError, match=re.escape("analysis: no group column 'sexe'")):
        monitor_frames(scored(300, 1), scored(300, 2), columns, window="rows:100")
    analysis = scored(300, 2)
    analysis["sex"] = ["f"] * 290 + ["m"] * 10
    run = monitor_frames(
        scored(300, 1), analysis, FrameColumns(score="proba", label="y", groups=("sex",)), window="chunks:1"
    )
    assert run.fairness["sex"] == [None]
    assert "at least 2 groups with >= 30 rows" in run.fairness_notes[("sex", 0)]


def test_rows_without_a_prediction_column_get_a_message_not_a_key_error() -> None:
    rows = pa.table({"x": [1.0, 2.0, 3.0], "label": [0.0, 1.0, 0.0]})
    with pytest.raises(MonitorColumnError, match=re.escape("the rows have no 'prediction' column")):
        reference_of_rows([rows], ProfileSpec(numeric=("x",), prediction=None))
