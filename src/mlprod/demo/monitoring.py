"""The demo's monitoring: the months after training, watched week by week.

August to December arrive in the versioned table (validated, screened, committed), so the feature
store's trailing late rates keep up. The champion's reference is built from July, its evaluation
month, with labels. Each later flight is then scored point-in-time and written to the prediction log
as the champion's traffic at its scheduled departure (a replay: five months of requests in seconds).
Labels arrive late: those of December have not come yet; the ones that came are committed to the
versioned table ``flight-labels`` (by request id), where ``mlprod monitor report --labels`` finds
them. Weekly monitoring finds drift, estimates accuracy without labels and compares it with the
realized accuracy where labels exist; ``check_version`` (as ``mlprod monitor check``) records the
alerts, and the HTML report is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.data import TableStore
from mlprod.demo.arrivals import MonthArrival, commit_months
from mlprod.demo.flights import MODEL, request_rows
from mlprod.features import FeatureSet
from mlprod.models import Registry, TrainingSpec, build_frame
from mlprod.models.training_spec import LABEL_COLUMN, TIME_COLUMN, join_features
from mlprod.monitor import LabelSource, MonitorResult, check_version, profile_version, write_html
from mlprod.serve import PredictionLogWriter, read_prediction_log
from mlprod.workspace import Workspace

MONITORED_MONTHS = range(8, 13)
LABELS_UNTIL = datetime(2013, 12, 1, tzinfo=UTC)  # December's labels have not arrived yet
SINCE = datetime(2013, 8, 1, tzinfo=UTC)
UNTIL = datetime(2014, 1, 2, tzinfo=UTC)  # departures are New York times: the last ones are 2014 in UTC
REPLAY_PREFIX = "replay-"
LABELS_TABLE = "flight-labels"
LABEL_KEY = ("request_id",)


@dataclass(frozen=True)
class MonitoringSummary:
    months: list[MonthArrival]
    reference_rows: int
    replayed: int
    labelled: int
    result: MonitorResult
    alerts: int
    new_alerts: int
    report: Path

    @property
    def partial_windows(self) -> int:
        return sum(w.partial for w in self.result.windows)

    @property
    def accuracy_mae(self) -> float | None:
        """Mean |estimated - realized| accuracy over the weeks with labels."""
        gaps = [
            abs(p.estimated - p.realized)
            for w in self.result.windows
            for p in w.performance
            if p.metric == "accuracy" and p.estimated is not None and p.realized is not None
        ]
        return float(np.mean(gaps)) if gaps else None


def monitor_champion(
    workspace: Workspace,
    tables: TableStore,
    flights: pa.Table,
    *,
    spec: TrainingSpec,
    feature_set: FeatureSet,
    reference: pd.DataFrame,
    version: int,
    report: Callable[[str], None],
) -> MonitoringSummary:
    """Let ``flights`` (August-December) arrive, replay the champion's traffic over them, monitor by week."""
    months = commit_months(tables, flights, MONITORED_MONTHS, report=report)
    ref = f"{MODEL}/{version}"
    profiled = profile_version(workspace, ref, pa.Table.from_pandas(reference), label=LABEL_COLUMN)
    with_context, _ = join_features(flights, spec, feature_set, workspace)
    frame = build_frame(spec, with_context, extra=["flight_id"])
    replayed = _replay(workspace, frame, spec, version)
    labelled = frame[frame[TIME_COLUMN] < LABELS_UNTIL]
    labels = pa.table(
        {
            "request_id": [f"{REPLAY_PREFIX}{i}" for i in labelled["_extra_flight_id"]],
            "late": labelled[LABEL_COLUMN].astype(np.float64).to_numpy(),
        }
    )
    _save_labels(tables, labels)
    checked = check_version(
        workspace,
        ref,
        labels=LabelSource(tables.checkout(LABELS_TABLE), column="late"),
        since=SINCE,
        until=UNTIL,
        routes=["champion"],
    )
    run = checked.run
    path = workspace.root / "reports" / f"monitor-{MODEL}-v{version}-week.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_html(
        run.result,
        path,
        rules=run.rules,
        reference=f"July 2013 ({profiled.reference.profile.rows:,} flights)",
    )
    return MonitoringSummary(
        months, profiled.reference.profile.rows, replayed, labels.num_rows, run.result, len(run.alerts),
        len(checked.new_alerts), path,
    )  # fmt: skip


def _save_labels(tables: TableStore, labels: pa.Table) -> None:
    """Commit the labels that arrived to ``flight-labels`` (a rerun commits nothing new)."""
    if LABELS_TABLE not in {t.name for t in tables.tables()}:
        tables.create(
            LABELS_TABLE, key=LABEL_KEY, description="labels of the replayed flights, as they arrive"
        )
    tables.commit(LABELS_TABLE, labels, mode="upsert", message="labels arrived until 2013-12-01")


def _replay(workspace: Workspace, frame: pd.DataFrame, spec: TrainingSpec, version: int) -> int:
    """Write the champion's predictions for ``frame`` to the log at each scheduled departure.

    Request ids are the flights', so a rerun (or a run resumed after a kill) writes only the rows
    not logged yet.
    """
    ids = [f"{REPLAY_PREFIX}{i}" for i in frame["_extra_flight_id"]]
    log = read_prediction_log(workspace.prediction_log_dir)
    logged = log.filter(pc.equal(log.column("version"), version)).column("request_id")
    todo = ~np.isin(np.asarray(ids, dtype=object), np.asarray(logged.to_pylist(), dtype=object))
    if not todo.any():
        return len(frame)
    missing = frame[todo]
    model = Registry(workspace).load(f"{MODEL}/{version}")
    started = time.perf_counter()
    predictions = model.predict_frame(missing[list(spec.features)])
    latency_ms = (time.perf_counter() - started) * 1000 / len(missing)
    writer = PredictionLogWriter(workspace.prediction_log_dir, flush_interval=60, max_buffered_rows=200_000)
    try:
        rows = request_rows(missing, spec.features)
        times = missing[TIME_COLUMN].dt.to_pydatetime()
        request_ids = np.asarray(ids, dtype=object)[todo]
        for request_id, row, prediction, at in zip(request_ids, rows, predictions, times, strict=True):
            writer.append(
                request_id=request_id, model=MODEL, version=version, route="champion", inputs=[row],
                predictions=[float(prediction)], latency_ms=latency_ms, at=at,
            )  # fmt: skip
    finally:
        writer.close()
    return len(frame)
