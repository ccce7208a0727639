"""Alerts: rules over monitoring results, records in the metadata database, webhook delivery.

A rule picks what deserves attention (drift verdicts of the primary statistics, any data-quality
breach, a performance metric fallen too far below its reference) and each match becomes an
``Alert``. The store keeps one record per model, version, window, rule, column and method, so
re-running monitoring over the same windows repeats no alert, and remembers which alerts a webhook
has received, so a delivery that failed is retried by the next run (at least once, never lost).

Examples:
    >>> from datetime import UTC, datetime
    >>> from mlprod.monitor.results import Check, MonitorResult, WindowResult
    >>> week = WindowResult(
    ...     start=datetime(2013, 7, 8, tzinfo=UTC), end=datetime(2013, 7, 15, tzinfo=UTC), rows=5000,
    ...     checks=[Check("dep_hour", "drift", "wasserstein", 0.23, 0.1, alert=True)],
    ... )
    >>> [a.message for a in evaluate_rules(MonitorResult("flights", 3, "week", [week]))]
    ['drift on dep_hour (wasserstein 0.23 > 0.1) in week 2013-07-08']
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mlprod.errors import DatabaseError, InvalidInputError
from mlprod.lazy import lazy_module
from mlprod.meta.tables import monitor_alerts
from mlprod.monitor.results import (
    DATASET_DRIFT,
    MULTIVARIATE,
    Check,
    MonitorResult,
    PerformancePoint,
    WindowResult,
)
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import httpx
else:
    httpx = lazy_module("httpx")

RuleKind = Literal["drift", "quality", "performance"]
PRIMARY_DRIFT_METHODS = ("wasserstein", "jensen_shannon", "pca_reconstruction", DATASET_DRIFT)
MIN_LABELLED_ROWS = 100  # fewer labels than this: the realized value is noise, the estimate decides


@dataclass(frozen=True)
class AlertRule:
    """What turns monitoring results into alerts.

    ``drift`` and ``quality`` rules match the checks of their kind whose verdict is an alert,
    restricted to ``methods`` and ``columns`` when given. A ``performance`` rule compares ``metric``
    (one where higher is better) with its reference value and alerts when the realized value, or the
    estimated one while no labels are in, is more than ``max_drop`` below it. The point value is
    compared, not the lower end of the band: a weekly band is wide and its end would alert on noise.
    """

    name: str
    kind: RuleKind
    methods: tuple[str, ...] | None = None
    columns: tuple[str, ...] | None = None
    metric: str | None = None
    max_drop: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInputError("alert rule: name must not be empty")
        if self.kind not in get_args(RuleKind):
            raise InvalidInputError(
                f"alert rule {self.name!r}: kind {self.kind!r} is not one of drift, quality, performance"
            )
        if self.kind == "performance":
            if not self.metric or self.max_drop is None or not self.max_drop >= 0:
                raise InvalidInputError(
                    f"alert rule {self.name!r}: a performance rule needs a metric and a max_drop >= 0, "
                    f"got metric={self.metric!r}, max_drop={self.max_drop!r}"
                )
        elif self.metric is not None or self.max_drop is not None:
            raise InvalidInputError(
                f"alert rule {self.name!r}: metric and max_drop apply to performance rules only, "
                f"not to {self.kind} rules"
            )


DEFAULT_RULES: tuple[AlertRule, ...] = (
    # Drift verdicts: per column, a significant shift of a size that matters (Wasserstein for numeric
    # features and the prediction score, Jensen-Shannon for categorical ones, each with its test's
    # p-value); over all features, PCA reconstruction error and the share of drifted columns.
    # PSI, KS and chi-squared alone stay in the report: on large windows they flag tiny shifts.
    AlertRule("drift", "drift", methods=PRIMARY_DRIFT_METHODS),
    AlertRule("data_quality", "quality"),
    AlertRule("accuracy_drop", "performance", metric="accuracy", max_drop=0.05),
)


@dataclass(frozen=True)
class Alert:
    """One rule matched in one window; ``message`` says why in one sentence."""

    model: str
    version: int
    window_start: datetime
    window_end: datetime
    rule: str
    column: str
    method: str
    statistic: float
    threshold: float
    message: str


@dataclass(frozen=True)
class StoredAlert(Alert):
    """An alert as recorded: ``delivered_at`` is None until a webhook accepted it."""

    id: int
    created_at: datetime
    delivered_at: datetime | None


def evaluate_rules(result: MonitorResult, rules: Sequence[AlertRule] = DEFAULT_RULES) -> list[Alert]:
    """The alerts ``rules`` raise on ``result``, window by window in time order (none in partial ones)."""
    alerts: list[Alert] = []
    for window in result.windows:
        if window.partial:
            continue
        for rule in rules:
            if rule.kind == "performance":
                alerts.extend(_performance_alert(result, window, rule, *d) for d in _drops(window, rule))
            else:
                alerts.extend(_check_alert(result, window, rule, c) for c in _matches(window, rule))
    return alerts


def describe_window(start: datetime, end: datetime, by: str) -> str:
    """A window as a reader names it: ``week 2013-07-08``, ``hour 2013-07-08 14:00``, …"""
    if by in ("week", "day"):
        return f"{by} {start:%Y-%m-%d}"
    if by == "hour":
        return f"hour {start:%Y-%m-%d %H:%M}"
    if by == "month":
        return f"month {start:%Y-%m}"
    if by == "quarter":
        return f"quarter {start.year}-Q{(start.month - 1) // 3 + 1}"
    if by == "year":
        return f"year {start.year}"
    return f"window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def window_title(window: WindowResult, by: str) -> str:
    """A window as reports and alerts name it: its calendar span, or its name (rows, chunk, column
    value) followed by the time its rows span when they had times."""
    if not window.name:
        return describe_window(window.start, window.end, by)
    if window.timeless:
        return window.name
    return f"{window.name} ({window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M})"


def format_number(value: float) -> str:
    """A statistic as printed in messages and reports: three significant digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _matches(window: WindowResult, rule: AlertRule) -> list[Check]:
    return [
        check
        for check in window.checks
        if check.alert
        and check.kind == rule.kind
        and not math.isnan(check.statistic)
        and (rule.methods is None or check.method in rule.methods)
        and (rule.columns is None or check.column in rule.columns)
    ]


def _drops(window: WindowResult, rule: AlertRule) -> list[tuple[PerformancePoint, str, float]]:
    """The points of the rule's metric more than ``max_drop`` below their reference, with what was seen."""
    assert rule.max_drop is not None  # checked by AlertRule
    return [
        (point, *seen)
        for point in window.performance
        if point.metric == rule.metric
        and (seen := _observed(point)) is not None
        and math.isfinite(point.reference)
        and point.reference - seen[1] > rule.max_drop
    ]


def _observed(point: PerformancePoint) -> tuple[str, float] | None:
    """The realized value once enough labels are in, else the estimate; None when neither is a number."""
    realized = point.realized if point.labelled_rows >= MIN_LABELLED_ROWS else None
    for source, value in (("realized", realized), ("estimated", point.estimated)):
        if value is not None and math.isfinite(value):
            return source, value
    return None


def _check_alert(result: MonitorResult, window: WindowResult, rule: AlertRule, check: Check) -> Alert:
    where = "all features" if check.column == MULTIVARIATE else check.column
    what = "drift" if check.kind == "drift" else "data quality"
    sign = (">=" if check.method == DATASET_DRIFT else ">") if check.higher_is_worse else "<"
    significance = (
        f", p {format_number(check.p_value)} < {format_number(check.alpha)}"
        if check.alpha is not None and check.p_value is not None
        else ""
    )
    message = (
        f"{what} on {where} ({check.method} {format_number(check.statistic)} {sign} "
        f"{format_number(check.threshold)}{significance}) in {window_title(window, result.by)}"
    )
    return Alert(
        result.model,
        result.version,
        window.start,
        window.end,
        rule.name,
        check.column,
        check.method,
        check.statistic,
        check.threshold,
        message,
    )


def _performance_alert(
    result: MonitorResult,
    window: WindowResult,
    rule: AlertRule,
    point: PerformancePoint,
    source: str,
    value: float,
) -> Alert:
    assert rule.max_drop is not None  # checked by AlertRule
    message = (
        f"{source} {point.metric} {format_number(value)} is {format_number(point.reference - value)} "
        f"below its reference {format_number(point.reference)} (allowed drop "
        f"{format_number(rule.max_drop)}) in {window_title(window, result.by)}"
    )
    return Alert(
        result.model,
        result.version,
        window.start,
        window.end,
        rule.name,
        point.metric,
        source,
        value,
        point.reference - rule.max_drop,
        message,
    )


class AlertStore:
    """The alerts of a workspace, in its metadata database (SQLite or PostgreSQL)."""

    def __init__(self, workspace: Workspace) -> None:
        self._engine = workspace.engine

    def record(self, alerts: Iterable[Alert]) -> builtins.list[Alert]:
        """Store ``alerts`` and return the new ones; an alert already recorded is skipped."""
        now = datetime.now(UTC)
        new: builtins.list[Alert] = []
        with self._engine.begin() as conn:
            insert = _insert_ignoring_duplicates(conn.dialect.name)
            for alert in alerts:
                if conn.execute(insert.values(**_row(alert), created_at=now)).first() is not None:
                    new.append(alert)
        return new

    def unrecorded(self, alerts: Iterable[Alert]) -> builtins.list[Alert]:
        """The ``alerts`` not recorded yet (read-only: what ``record`` would add)."""
        alerts = builtins.list(alerts)
        versions = {(a.model, a.version) for a in alerts}
        c = monitor_alerts.c
        known: set[tuple[Any, ...]] = set()
        with self._engine.connect() as conn:
            for model, version in versions:
                query = sa.select(c.window_start, c.window_end, c.rule, c.column_name, c.method).where(
                    c.model == model, c.version == version
                )
                known |= {(model, version, *row) for row in conn.execute(query)}
        return [a for a in alerts if _key(a) not in known]

    def list(
        self,
        *,
        model: str | None = None,
        version: int | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> builtins.list[StoredAlert]:
        """Recorded alerts, newest window first; ``since`` keeps windows starting at or after it."""
        if limit < 1:
            raise InvalidInputError(f"limit must be a positive number of alerts, got {limit}")
        query = monitor_alerts.select()
        if model is not None:
            query = query.where(monitor_alerts.c.model == model)
        if version is not None:
            query = query.where(monitor_alerts.c.version == version)
        if since is not None:
            query = query.where(monitor_alerts.c.window_start >= _aware(since, "since"))
        query = query.order_by(monitor_alerts.c.window_start.desc(), monitor_alerts.c.id.desc())
        return self._fetch(query.limit(limit))

    def pending(self, *, limit: int = 500) -> builtins.list[StoredAlert]:
        """Alerts no webhook has accepted yet, oldest first."""
        query = (
            monitor_alerts.select()
            .where(monitor_alerts.c.delivered_at.is_(None))
            .order_by(monitor_alerts.c.id)
            .limit(limit)
        )
        return self._fetch(query)

    def count_pending(self) -> int:
        """How many alerts no webhook has accepted yet."""
        query = (
            sa.select(sa.func.count())
            .select_from(monitor_alerts)
            .where(monitor_alerts.c.delivered_at.is_(None))
        )
        with self._engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def mark_delivered(self, ids: Iterable[int]) -> int:
        """Record that the alerts ``ids`` were delivered; returns how many were still pending."""
        ids = builtins.list(ids)
        if not ids:
            return 0
        with self._engine.begin() as conn:
            done = conn.execute(
                monitor_alerts.update()
                .where(monitor_alerts.c.id.in_(ids), monitor_alerts.c.delivered_at.is_(None))
                .values(delivered_at=datetime.now(UTC))
            )
        return done.rowcount

    def _fetch(self, query: sa.Select[Any]) -> builtins.list[StoredAlert]:
        with self._engine.connect() as conn:
            return [
                StoredAlert(
                    r.model,
                    r.version,
                    r.window_start,
                    r.window_end,
                    r.rule,
                    r.column_name,
                    r.method,
                    r.statistic,
                    r.threshold,
                    r.message,
                    r.id,
                    r.created_at,
                    r.delivered_at,
                )
                for r in conn.execute(query)
            ]


def _insert_ignoring_duplicates(dialect: str) -> Any:
    # ON CONFLICT DO NOTHING rather than check-then-insert: two monitoring runs racing on the same
    # window must both succeed; RETURNING (not rowcount, -1 on PostgreSQL here) tells who inserted.
    if dialect == "sqlite":
        return sqlite.insert(monitor_alerts).on_conflict_do_nothing().returning(monitor_alerts.c.id)
    if dialect == "postgresql":
        return postgresql.insert(monitor_alerts).on_conflict_do_nothing().returning(monitor_alerts.c.id)
    raise DatabaseError(f"alerts are stored in SQLite or PostgreSQL only, not in {dialect}")


def _row(alert: Alert) -> dict[str, Any]:
    return {
        "model": alert.model,
        "version": alert.version,
        "window_start": _aware(alert.window_start, "window_start"),
        "window_end": _aware(alert.window_end, "window_end"),
        "rule": alert.rule,
        "column_name": alert.column,
        "method": alert.method,
        "statistic": alert.statistic,
        "threshold": alert.threshold,
        "message": alert.message,
    }


def _key(alert: Alert) -> tuple[Any, ...]:
    """What makes an alert unique in the store (aware times hash and compare as instants)."""
    row = _row(alert)
    return tuple(
        row[k] for k in ("model", "version", "window_start", "window_end", "rule", "column_name", "method")
    )


def _aware(moment: datetime, field: str) -> datetime:
    if moment.tzinfo is None:
        raise InvalidInputError(f"{field} {moment} has no time zone; give an aware time, e.g. in UTC")
    return moment


@dataclass(frozen=True)
class Delivery:
    """What a webhook did with a POST: ``ok`` on a 2xx answer, else ``error`` says why not."""

    ok: bool
    status: int | None
    error: str = ""


@dataclass(frozen=True)
class DeliveryReport:
    """The outcome of ``deliver_pending``: alerts delivered now, alerts still pending, last error."""

    delivered: int
    pending: int
    error: str = ""


def post_webhook(
    url: str, alerts: Sequence[Alert], *, timeout: float = 5.0, token: str | None = None
) -> Delivery:
    """POST ``{"alerts": [...]}`` to ``url`` (with a bearer ``token`` if given).

    A webhook that is down, slow or answers non-2xx does not raise: the ``Delivery`` says so and
    the caller keeps the alerts for a later try. Only a malformed ``url`` raises.
    """
    checked = _webhook_url(url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"alerts": [_payload(alert) for alert in alerts]}
    try:
        response = httpx.post(checked, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Delivery(False, None, f"webhook {checked} unreachable: {type(exc).__name__}: {exc}")
    if not response.is_success:
        return Delivery(
            False, response.status_code, f"webhook {checked} answered HTTP {response.status_code}"
        )
    return Delivery(True, response.status_code)


def deliver_pending(
    store: AlertStore,
    url: str,
    *,
    timeout: float = 5.0,
    token: str | None = None,
    batch_size: int = 500,
) -> DeliveryReport:
    """POST every pending alert to ``url``, ``batch_size`` per request, until none is left or one fails.

    Alerts are marked delivered only once the webhook answered 2xx; the others stay pending for the
    next call. A crash between the answer and the marking sends a batch twice, never loses one.
    """
    _webhook_url(url)
    delivered = 0
    while batch := store.pending(limit=batch_size):
        outcome = post_webhook(url, batch, timeout=timeout, token=token)
        if not outcome.ok:
            return DeliveryReport(delivered, store.count_pending(), outcome.error)
        delivered += store.mark_delivered(alert.id for alert in batch)
    return DeliveryReport(delivered, 0)


def _webhook_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidInputError(f"webhook url {url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(
            f"webhook url {url!r} must be an http:// or https:// URL with a host, "
            "e.g. https://hooks.example.com/mlprod"
        )
    return str(parsed)


def _payload(alert: Alert) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": alert.model,
        "version": alert.version,
        "window_start": alert.window_start.isoformat(),
        "window_end": alert.window_end.isoformat(),
        "rule": alert.rule,
        "column": alert.column,
        "method": alert.method,
        # JSON has no NaN or infinity: an unbounded statistic travels as null.
        "statistic": alert.statistic if math.isfinite(alert.statistic) else None,
        "threshold": alert.threshold if math.isfinite(alert.threshold) else None,
        "message": alert.message,
    }
    if isinstance(alert, StoredAlert):
        body["id"] = alert.id
        body["created_at"] = alert.created_at.isoformat()
    return body
