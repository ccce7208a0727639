"""Monitoring end to end in a workspace: reference, prediction log with late labels, windows, alerts.

Reading (``monitor_version``) writes nothing; ``check_version`` records and sends the alerts.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.models import EstimatorSpec, Registry, train_classifier
from mlprod.monitor.alerts import Alert, AlertStore
from mlprod.monitor.log_source import LabelSource, logged_rows
from mlprod.monitor.monitoring import MonitorSettings, monitor_batches
from mlprod.monitor.reference import Reference, ReferenceStore
from mlprod.monitor.results import WindowResult
from mlprod.monitor.version_monitor import check_version, monitor_version, profile_version
from mlprod.monitor.windows import Windowing
from mlprod.serve import PredictionLogWriter
from mlprod.workspace import Workspace

MONDAY = datetime(2013, 7, 1, tzinfo=UTC)
WEEKS = 3
PARTIAL_ROWS = 60  # the fourth week has just begun: one hour of far-shifted predictions


def flights_like(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Two correlated numbers and a category; the label follows them. ``shift`` moves ``x1``."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n) + shift
    x2 = x1 + rng.normal(scale=0.5, size=n)
    c = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    logit = 1.5 * x1 - 0.5 * x2 + np.where(c == "a", 1.0, -1.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "y": y})


@pytest.fixture
def served(workspace: Workspace) -> tuple[Workspace, pa.Table]:
    """Model ``m`` v1 trained and profiled; three weeks logged (the third shifted); labels by request."""
    trained = train_classifier(
        flights_like(3000, 0), label="y", numeric=["x1", "x2"], categorical=["c"],
        estimator=EstimatorSpec("lightgbm", {"n_estimators": 20}),
    )  # fmt: skip
    registry = Registry(workspace)
    registry.register("m", trained.model, signature=trained.signature)
    registry.set_alias("m", "champion", 1)
    profile_version(workspace, "m@champion", pa.Table.from_pandas(flights_like(5000, 1)), label="y")
    model = registry.load("m/1")
    writer = PredictionLogWriter(workspace.prediction_log_dir, flush_interval=3600)
    ids, labels = [], []
    for week in range(WEEKS):
        rows = flights_like(1500, 10 + week, shift=1.5 if week == 2 else 0.0)
        scores = model.predict_frame(rows)
        for i, (row, score) in enumerate(zip(rows.to_dict("records"), scores, strict=True)):
            request_id = f"w{week}-{i}"
            writer.append(
                request_id=request_id, model="m", version=1, route="champion",
                inputs=[{k: row[k] for k in ("x1", "x2", "c")}], predictions=[float(score)], latency_ms=1.0,
                at=MONDAY + timedelta(weeks=week, seconds=i * 60),
            )  # fmt: skip
            if week < 2 and i % 2 == 0:  # half the labels of the first two weeks have arrived
                ids.append(request_id)
                labels.append(int(row["y"]))
    rows = flights_like(PARTIAL_ROWS, 20, shift=3.0)
    for i, (row, score) in enumerate(zip(rows.to_dict("records"), model.predict_frame(rows), strict=True)):
        writer.append(
            request_id=f"w{WEEKS}-{i}", model="m", version=1, route="champion",
            inputs=[{k: row[k] for k in ("x1", "x2", "c")}], predictions=[float(score)], latency_ms=1.0,
            at=MONDAY + timedelta(weeks=WEEKS, seconds=i * 60),
        )  # fmt: skip
    writer.close()
    return workspace, pa.table({"request_id": ids, "delayed": labels})


def test_weekly_windows_find_the_planted_drift_and_estimate_accuracy(
    served: tuple[Workspace, pa.Table],
) -> None:
    workspace, labels = served
    run = check_version(workspace, "m@champion", labels=LabelSource(labels, column="delayed"))
    windows = run.run.result.windows
    assert [w.start for w in windows] == [MONDAY + timedelta(weeks=k) for k in range(WEEKS + 1)]
    assert [w.rows for w in windows] == [1500] * WEEKS + [PARTIAL_ROWS]
    assert [w.partial for w in windows] == [False] * WEEKS + [True]
    primary = {"wasserstein", "jensen_shannon", "pca_reconstruction"}
    drifted = [{c.column for c in w.alerts if c.method in primary} for w in windows]
    assert drifted[0] == drifted[1] == set()
    assert {"x1", "x2", "prediction"} <= drifted[2]
    assert {"x1", "x2", "prediction"} <= drifted[3]  # the partial week's checks alarm, yet it raises no alert
    assert {a.window_start for a in run.run.alerts} <= {w.start for w in windows[:WEEKS]}
    accuracy = [next(p for p in w.performance if p.metric == "accuracy") for w in windows]
    assert [p.labelled_rows for p in accuracy] == [750, 750, 0, 0]
    for point in accuracy[:2]:
        assert point.estimated is not None and point.realized is not None
        assert abs(point.estimated - point.realized) < 0.06
        assert (
            point.lower is not None
            and point.upper is not None
            and point.lower <= point.estimated <= point.upper
        )
    assert accuracy[2].realized is None and accuracy[2].estimated is not None
    assert {a.column for a in run.new_alerts if a.rule == "drift"} >= {"x1", "x2"}
    assert all(a.window_start == windows[2].start for a in run.new_alerts if a.rule == "drift")


def test_monitoring_records_nothing_and_a_second_check_records_no_alert_twice(
    served: tuple[Workspace, pa.Table],
) -> None:
    workspace, _ = served
    read = monitor_version(workspace, "m/1")
    assert read.alerts and AlertStore(workspace).list() == []
    assert AlertStore(workspace).unrecorded(read.alerts) == read.alerts
    first = check_version(workspace, "m/1")
    again = check_version(workspace, "m/1")

    def keys(alerts: list[Alert]) -> list[tuple[object, ...]]:
        return [(a.window_start, a.rule, a.column, a.method) for a in alerts]

    assert keys(first.new_alerts) == keys(first.run.alerts) == keys(read.alerts)
    assert keys(again.run.alerts) == keys(first.run.alerts) and again.new_alerts == []
    assert len(AlertStore(workspace).list()) == len(first.new_alerts)
    assert AlertStore(workspace).unrecorded(read.alerts) == []
    assert first.delivery is None  # no webhook configured


def test_a_window_is_partial_where_the_range_read_does_not_cover_it(
    served: tuple[Workspace, pa.Table],
) -> None:
    workspace, _ = served

    def partial(since: datetime | None = None, until: datetime | None = None) -> list[tuple[datetime, bool]]:
        run = monitor_version(workspace, "m/1", since=since, until=until)
        return [(w.start, w.partial) for w in run.result.windows]

    week = [MONDAY + timedelta(weeks=k) for k in range(WEEKS + 1)]
    assert partial() == [(week[0], False), (week[1], False), (week[2], False), (week[3], True)]
    # cut at a Monday with later predictions logged: the week before it is whole
    assert partial(since=week[1], until=week[3]) == [(week[1], False), (week[2], False)]
    # cut inside a week, at either end: that week is partial
    assert partial(since=week[1] + timedelta(hours=1), until=week[2] + timedelta(hours=1)) == [
        (week[1], True), (week[2], True),
    ]  # fmt: skip
    # an --until past the newest prediction does not make the newest window whole
    assert partial(since=week[3], until=week[3] + timedelta(weeks=1)) == [(week[3], True)]
    monthly = monitor_version(workspace, "m/1", settings=MonitorSettings(windowing=Windowing.parse("month")))
    (july,) = monthly.result.windows
    assert (july.rows, july.partial, monthly.alerts) == (3 * 1500 + PARTIAL_ROWS, True, [])


def test_windows_fed_batch_by_batch_equal_windows_fed_at_once(served: tuple[Workspace, pa.Table]) -> None:
    workspace, _ = served
    reference = ReferenceStore(workspace).load("m", 1)
    spec = reference.spec

    def run(batch_rows: int) -> list[WindowResult]:
        batches = logged_rows(
            workspace.prediction_log_dir, model="m", version=1, numeric=spec.numeric,
            categorical=spec.categorical, batch_rows=batch_rows,
        )  # fmt: skip
        return monitor_batches(batches, reference, model="m", version=1).windows

    # Counts and histograms are exact and sums equal up to float rounding; KS and Wasserstein come
    # from KLL sketches, whose randomized compaction makes them agree within the sketch's error only.
    for small, large in zip(run(97), run(100_000), strict=True):
        assert (small.start, small.rows, small.performance) == (large.start, large.rows, large.performance)
        assert [(c.column, c.method, c.alert) for c in small.checks] == [
            (c.column, c.method, c.alert) for c in large.checks
        ]
        for a, b in zip(small.checks, large.checks, strict=True):
            tolerance = 0.03 if a.method in ("ks", "wasserstein") else 1e-9
            assert a.statistic == pytest.approx(b.statistic, abs=tolerance), (a.column, a.method)
    by_count = MonitorSettings(windowing=Windowing.parse("1000"))
    counted = monitor_batches(
        logged_rows(workspace.prediction_log_dir, model="m", version=1, numeric=spec.numeric,
                    categorical=spec.categorical, batch_rows=333),
        reference, model="m", version=1, settings=by_count,
    )  # fmt: skip
    assert [w.rows for w in counted.windows] == [1000, 1000, 1000, 1000, 500 + PARTIAL_ROWS]
    assert [w.partial for w in counted.windows] == [False] * 4 + [True]  # short of its 1000 rows
    assert counted.by == "1000 rows"


def test_the_reference_round_trips_and_keeps_its_parts(served: tuple[Workspace, pa.Table]) -> None:
    workspace, _ = served
    reference = ReferenceStore(workspace).load("m", 1)
    assert reference.estimator is not None and reference.multivariate is not None
    assert reference.spec.numeric == ("x1", "x2") and reference.spec.categorical == ("c",)
    again = Reference.from_bytes(reference.to_bytes())
    assert again.to_bytes() == reference.to_bytes()


def test_bad_inputs_are_clear_errors(served: tuple[Workspace, pa.Table], tmp_path: Path) -> None:
    workspace, _ = served
    Registry(workspace).register(
        "m", train_classifier(flights_like(500, 3), label="y", numeric=["x1", "x2"], categorical=["c"],
                              estimator=EstimatorSpec("lightgbm", {"n_estimators": 3})).model,
        signature=Registry(workspace).get("m/1").signature,
    )  # fmt: skip
    with pytest.raises(NotFoundError, match="mlprod monitor profile --model m/2"):
        monitor_version(workspace, "m/2")
    with pytest.raises(NotFoundError):
        profile_version(workspace, "nobody@champion", pa.table({"x1": [1.0]}))
    with pytest.raises(InvalidInputError, match="no label column 'delayed'"):
        profile_version(workspace, "m/2", pa.Table.from_pandas(flights_like(50, 4)), label="delayed")
    with pytest.raises(InvalidInputError, match="missing column"):
        profile_version(workspace, "m/2", pa.table({"x1": [1.0]}))
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(InvalidInputError, match=r"expected a \.parquet or \.csv file"):
        profile_version(workspace, "m/2", tmp_path / "data.json")
    with pytest.raises(InvalidInputError, match="no rows"):
        profile_version(workspace, "m/2", pa.Table.from_pandas(flights_like(5, 4)).slice(0, 0))
    assert ReferenceStore(workspace).load("m", 1).profile.rows == 5000  # nothing lost


def test_a_bad_prediction_in_the_log_is_missing_not_fatal(served: tuple[Workspace, pa.Table]) -> None:
    workspace, _ = served
    writer = PredictionLogWriter(workspace.prediction_log_dir, flush_interval=3600)
    for i, score in enumerate([float("nan"), float("inf"), 1.5]):
        writer.append(request_id=f"bad{i}", model="m", version=1, route="champion",
                      inputs=[{"x1": 0.1, "x2": 0.2, "c": "a"}], predictions=[score], latency_ms=1.0,
                      at=MONDAY + timedelta(hours=i))  # fmt: skip
    writer.close()
    first = monitor_version(workspace, "m/1").result.windows[0]
    assert first.rows == 1503
    missing = next(c for c in first.checks if c.column == "prediction" and c.method == "missing_rate")
    assert missing.statistic == pytest.approx(2 / 1503)  # NaN and inf; 1.5 is a number, out of range


def test_labels_count_without_a_labelled_reference_and_one_class_estimates_nothing(
    served: tuple[Workspace, pa.Table],
) -> None:
    workspace, labels = served
    unlabelled = flights_like(5000, 1)
    profile_version(workspace, "m/1", pa.Table.from_pandas(unlabelled))
    run = monitor_version(workspace, "m/1", labels=LabelSource(labels, column="delayed"))
    accuracy = [next((p for p in w.performance if p.metric == "accuracy"), None) for w in run.result.windows]
    assert accuracy[0] is not None and accuracy[0].estimated is None and accuracy[0].realized is not None
    assert accuracy[2] is None  # no label, no reference: nothing to show
    one_class = unlabelled.assign(y=1)
    assert (
        profile_version(workspace, "m/1", pa.Table.from_pandas(one_class), label="y").reference.estimator
        is None
    )


def test_windows_of_another_length_are_other_windows_for_alerts(served: tuple[Workspace, pa.Table]) -> None:
    workspace, _ = served
    daily = check_version(workspace, "m/1", settings=MonitorSettings(windowing=Windowing.parse("day")))
    weekly = check_version(workspace, "m/1")  # the third week starts on the day of a daily window
    assert daily.new_alerts and weekly.new_alerts
    assert {a.window_end - a.window_start for a in weekly.new_alerts} == {timedelta(weeks=1)}
