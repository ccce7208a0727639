"""Monitoring in a workspace: profile a registered version, monitor it over its prediction log, alert.

``profile_version`` scores the version's reference data (a Parquet or CSV file of any size, read in
batches, or an Arrow table) and stores the reference. ``monitor_version`` reads the version's
prediction log window by window, joins the labels that have arrived, checks every window and says
which alerts the rules raise; it writes nothing, so a report can run any time. ``check_version``
does the same, then records the alerts not recorded yet (deduplicated per window) and posts the
undelivered ones to the configured webhook: running it again records and sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pv
import pyarrow.parquet as pq

from mlprod.errors import InvalidInputError, WindowSpecError
from mlprod.models import ModelVersion, Registry
from mlprod.monitor.alerts import (
    DEFAULT_RULES,
    Alert,
    AlertRule,
    AlertStore,
    DeliveryReport,
    deliver_pending,
    evaluate_rules,
)
from mlprod.monitor.log_source import LabelSource, logged_rows, newest_logged
from mlprod.monitor.monitoring import MonitorSettings, monitor_batches
from mlprod.monitor.reference import Reference, ReferenceStore, build_reference
from mlprod.monitor.results import MonitorResult
from mlprod.workspace import Workspace

BATCH_ROWS = 100_000


@dataclass(frozen=True)
class ProfiledVersion:
    version: ModelVersion
    reference: Reference
    artifact_sha256: str


@dataclass(frozen=True)
class MonitorRun:
    """A monitoring run: its windows, its rules, the alerts they raise (whole windows only)."""

    result: MonitorResult
    rules: tuple[AlertRule, ...]
    alerts: list[Alert]


@dataclass(frozen=True)
class VersionCheck:
    """A check: the run, the alerts it recorded for the first time, and the webhook's delivery."""

    run: MonitorRun
    new_alerts: list[Alert]
    delivery: DeliveryReport | None


def settings_of(workspace: Workspace) -> MonitorSettings:
    return MonitorSettings.from_config(workspace.config.monitor)


def profile_version(
    workspace: Workspace,
    ref: str,
    source: Path | pa.Table,
    *,
    label: str | None = None,
    settings: MonitorSettings | None = None,
) -> ProfiledVersion:
    """Build and store the reference of ``ref`` from ``source`` (its training or evaluation data)."""
    settings = settings or settings_of(workspace)
    registry = Registry(workspace)
    version = registry.get(ref)
    model = registry.load(version)
    batches = _batches(source) if isinstance(source, Path) else iter(source.to_batches(BATCH_ROWS))
    reference = build_reference(model, batches, label=label, options=settings.reference)
    where = str(source) if isinstance(source, Path) else f"table of {source.num_rows:,} rows"
    sha = ReferenceStore(workspace).save(version, reference, source=where)
    return ProfiledVersion(version, reference, sha)


def monitor_version(
    workspace: Workspace,
    ref: str,
    *,
    labels: LabelSource | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    routes: list[str] | None = None,
    settings: MonitorSettings | None = None,
    rules: tuple[AlertRule, ...] | None = None,
    progress: Callable[[int], None] | None = None,
) -> MonitorRun:
    """Monitor ``ref``'s logged predictions window by window, read-only: nothing is recorded or sent.

    A window is whole when the range read covers it: it starts at or after ``since`` and ends at or
    before both ``until`` and the newest prediction logged for the version (a later prediction
    closes it). The others are marked partial and raise no alert.
    """
    settings = settings or settings_of(workspace)
    if settings.windowing.by in ("chunks", "column"):
        raise WindowSpecError(
            f"window {settings.windowing.description}: chunk and column windows need the data first; over "
            "the prediction log window by time (hour … year) or rows (rows:N), or export the rows and "
            "use `mlprod monitor run`"
        )
    version = Registry(workspace).get(ref)
    reference = ReferenceStore(workspace).load(version.model, version.version)
    log_dir = workspace.prediction_log_dir
    batches = logged_rows(
        log_dir, model=version.model, version=version.version, numeric=reference.spec.numeric,
        categorical=reference.spec.categorical, labels=labels, since=since, until=until, routes=routes,
    )  # fmt: skip
    newest = newest_logged(log_dir, model=version.model, version=version.version, routes=routes)
    newest += timedelta(microseconds=1)
    result = monitor_batches(
        batches, reference, model=version.model, version=version.version, settings=settings,
        since=since, until=min(until, newest) if until else newest, progress=progress,
    )  # fmt: skip
    rules = rules if rules is not None else rules_of(settings)
    return MonitorRun(result, rules, evaluate_rules(result, rules))


def check_version(
    workspace: Workspace,
    ref: str,
    *,
    labels: LabelSource | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    routes: list[str] | None = None,
    settings: MonitorSettings | None = None,
    rules: tuple[AlertRule, ...] | None = None,
    progress: Callable[[int], None] | None = None,
) -> VersionCheck:
    """``monitor_version``, then record its alerts not recorded yet and deliver the pending ones.

    Idempotent: an alert is recorded once per model, version, window, rule, column and method, and
    sent until the webhook accepted it once. A window is examined again by each check, so labels
    arrived since can raise its realized-accuracy alert later; a partial window raises none until whole.
    """
    settings = settings or settings_of(workspace)
    run = monitor_version(
        workspace, ref, labels=labels, since=since, until=until, routes=routes, settings=settings,
        rules=rules, progress=progress,
    )  # fmt: skip
    store = AlertStore(workspace)
    new = store.record(run.alerts)
    delivery = deliver_pending(store, settings.webhook_url) if settings.webhook_url else None
    return VersionCheck(run, new, delivery)


def rules_of(settings: MonitorSettings) -> tuple[AlertRule, ...]:
    """The default rules, with the configured accuracy drop."""
    return tuple(
        AlertRule(r.name, r.kind, metric=r.metric, max_drop=settings.accuracy_drop)
        if r.kind == "performance" and r.metric == "accuracy"
        else r
        for r in DEFAULT_RULES
    )


def _batches(path: Path) -> Iterator[pa.Table]:
    """A Parquet or CSV file in batches (bounded memory)."""
    if not path.is_file():
        raise InvalidInputError(f"reference data {path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(BATCH_ROWS):  # bounded memory
            yield pa.Table.from_batches([batch])
    elif suffix == ".csv":
        try:
            with pv.open_csv(path, read_options=pv.ReadOptions(block_size=1 << 24)) as reader:
                for batch in reader:
                    yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:  # e.g. a column typed from the first block meets other values later
            raise InvalidInputError(f"reference data {path}: {exc}; Parquet keeps column types") from exc
    else:
        raise InvalidInputError(f"reference data {path}: expected a .parquet or .csv file")
