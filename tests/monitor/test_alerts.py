from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlprod.errors import InvalidInputError
from mlprod.monitor.alerts import (
    DEFAULT_RULES,
    MIN_LABELLED_ROWS,
    Alert,
    AlertRule,
    AlertStore,
    StoredAlert,
    deliver_pending,
    describe_window,
    evaluate_rules,
    post_webhook,
)
from mlprod.monitor.results import Check, MonitorResult, PerformancePoint, WindowResult
from mlprod.workspace import Workspace

WEEK1 = datetime(2013, 7, 8, tzinfo=UTC)
WEEK2 = datetime(2013, 7, 15, tzinfo=UTC)


def week(start: datetime, checks: list[Check], performance: list[PerformancePoint]) -> WindowResult:
    return WindowResult(start, start + timedelta(weeks=1), 1000, checks, performance)


def monitored() -> MonitorResult:
    """Two weeks: the first drifts, breaks quality and loses accuracy; the second has labels."""
    first = week(
        WEEK1,
        [
            Check("dep_hour", "drift", "wasserstein", 0.23, 0.1, alert=True),
            Check("dep_hour", "drift", "psi", 0.4, 0.2, alert=True),  # not a primary method
            Check("carrier", "drift", "jensen_shannon", 0.02, 0.1, alert=False),
            Check("*", "drift", "pca_reconstruction", 1.8, 1.2, alert=True),
            Check("prediction", "drift", "wasserstein", 0.05, 0.1, alert=False),
            Check("dep_delay", "quality", "missing_rate", 0.31, 0.05, alert=True),
        ],
        [
            PerformancePoint("accuracy", 0.8, estimated=0.7, lower=0.65, upper=0.75),
            PerformancePoint("auc", 0.9, estimated=0.7, lower=0.6, upper=0.8),
        ],
    )
    second = week(
        WEEK2,
        [Check("prediction", "drift", "wasserstein", 0.3, 0.1, alert=True)],
        [PerformancePoint("accuracy", 0.8, estimated=0.6, realized=0.79, labelled_rows=900)],
    )
    return MonitorResult("flights", 3, "week", [first, second])


def keys(alerts: list[Alert]) -> list[tuple[datetime, str, str, str]]:
    return [(a.window_start, a.rule, a.column, a.method) for a in alerts]


def test_default_rules_alert_on_primary_drift_quality_and_accuracy_drop() -> None:
    assert keys(evaluate_rules(monitored())) == [
        (WEEK1, "drift", "dep_hour", "wasserstein"),
        (WEEK1, "drift", "*", "pca_reconstruction"),
        (WEEK1, "data_quality", "dep_delay", "missing_rate"),
        (WEEK1, "accuracy_drop", "accuracy", "estimated"),
        (WEEK2, "drift", "prediction", "wasserstein"),
    ]


def test_a_partial_window_raises_no_alert() -> None:
    first, second = monitored().windows
    partial = MonitorResult("flights", 3, "week", [first, replace(second, partial=True)])
    assert keys(evaluate_rules(partial)) == keys(evaluate_rules(monitored()))[:-1]
    assert evaluate_rules(MonitorResult("flights", 3, "week", [replace(first, partial=True)])) == []


def test_alert_messages_say_what_crossed_which_threshold_when() -> None:
    assert [a.message for a in evaluate_rules(monitored())] == [
        "drift on dep_hour (wasserstein 0.23 > 0.1) in week 2013-07-08",
        "drift on all features (pca_reconstruction 1.8 > 1.2) in week 2013-07-08",
        "data quality on dep_delay (missing_rate 0.31 > 0.05) in week 2013-07-08",
        "estimated accuracy 0.7 is 0.1 below its reference 0.8 (allowed drop 0.05) in week 2013-07-08",
        "drift on prediction (wasserstein 0.3 > 0.1) in week 2013-07-15",
    ]


def test_a_performance_alert_carries_the_value_and_the_alert_level() -> None:
    drop = next(a for a in evaluate_rules(monitored()) if a.rule == "accuracy_drop")
    assert (drop.statistic, drop.threshold) == (0.7, pytest.approx(0.75))
    assert (drop.model, drop.version, drop.window_end) == ("flights", 3, WEEK1 + timedelta(weeks=1))


def test_a_lower_is_worse_check_reads_with_a_less_than_sign() -> None:
    check = Check("rows", "quality", "row_count", 3.0, 100.0, alert=True, higher_is_worse=False)
    result = MonitorResult("m", 1, "day", [week(WEEK1, [check], [])])
    assert evaluate_rules(result)[0].message == "data quality on rows (row_count 3 < 100) in day 2013-07-08"


def test_realized_performance_wins_over_the_estimate() -> None:
    strict = AlertRule("strict", "performance", metric="accuracy", max_drop=0.0)
    alerts = evaluate_rules(monitored(), [strict])
    assert [(a.window_start, a.method, a.statistic) for a in alerts] == [
        (WEEK1, "estimated", 0.7),
        (WEEK2, "realized", 0.79),
    ]
    assert alerts[1].message.startswith("realized accuracy 0.79 is 0.01 below its reference 0.8")


def test_a_realized_value_from_a_few_labels_does_not_decide() -> None:
    strict = AlertRule("strict", "performance", metric="accuracy", max_drop=0.05)
    few = PerformancePoint("accuracy", 0.8, estimated=0.79, realized=0.5, labelled_rows=MIN_LABELLED_ROWS - 1)
    assert evaluate_rules(MonitorResult("m", 1, "week", [week(WEEK1, [], [few])]), [strict]) == []
    enough = replace(few, labelled_rows=MIN_LABELLED_ROWS)
    [alert] = evaluate_rules(MonitorResult("m", 1, "week", [week(WEEK1, [], [enough])]), [strict])
    assert (alert.method, alert.statistic) == ("realized", 0.5)


def test_a_drop_of_exactly_max_drop_does_not_alert() -> None:
    rule = AlertRule("auc", "performance", metric="auc", max_drop=0.25)
    points = [PerformancePoint("auc", 0.75, estimated=0.5)]
    assert evaluate_rules(MonitorResult("m", 1, "week", [week(WEEK1, [], points)]), [rule]) == []
    assert len(evaluate_rules(monitored(), [replace(rule, max_drop=0.19)])) == 1


def test_rules_filter_by_method_and_column() -> None:
    rules = [AlertRule("psi", "drift", methods=("psi",)), AlertRule("pred", "drift", columns=("prediction",))]
    assert keys(evaluate_rules(monitored(), rules)) == [
        (WEEK1, "psi", "dep_hour", "psi"),
        (WEEK2, "pred", "prediction", "wasserstein"),
    ]


def test_undefined_numbers_raise_no_alert() -> None:
    window = week(
        WEEK1,
        [Check("x", "drift", "wasserstein", float("nan"), 0.1, alert=True)],
        [
            PerformancePoint("accuracy", 0.9, estimated=float("nan")),
            PerformancePoint("accuracy", float("nan"), estimated=0.1),
            PerformancePoint("accuracy", 0.9),
        ],
    )
    assert evaluate_rules(MonitorResult("m", 1, "week", [window])) == []
    assert evaluate_rules(MonitorResult("m", 1, "week", [])) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "speed"}, "kind 'speed' is not one of drift, quality, performance"),
        ({"kind": "performance"}, "a performance rule needs a metric and a max_drop >= 0"),
        ({"kind": "performance", "metric": "auc", "max_drop": -0.1}, "max_drop >= 0"),
        ({"kind": "drift", "max_drop": 0.1}, "metric and max_drop apply to performance rules only"),
        ({"kind": "drift", "name": ""}, "name must not be empty"),
    ],
)
def test_malformed_rules_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        AlertRule(**{"name": "r", **kwargs})


def test_default_rules_are_documented_ones() -> None:
    assert [(r.name, r.kind, r.methods, r.metric, r.max_drop) for r in DEFAULT_RULES] == [
        (
            "drift",
            "drift",
            ("wasserstein", "jensen_shannon", "pca_reconstruction", "drift_share"),
            None,
            None,
        ),
        ("data_quality", "quality", None, None, None),
        ("accuracy_drop", "performance", None, "accuracy", 0.05),
    ]


@pytest.mark.parametrize(
    ("by", "label"),
    [
        ("week", "week 2013-07-08"),
        ("day", "day 2013-07-08"),
        ("hour", "hour 2013-07-08 14:00"),
        ("month", "month 2013-07"),
        ("count", "window 2013-07-08 14:00 to 2013-07-08 16:30"),
    ],
)
def test_windows_are_named_after_their_span(by: str, label: str) -> None:
    start = WEEK1.replace(hour=14)
    assert describe_window(start, start + timedelta(hours=2, minutes=30), by) == label


# --- the store, on SQLite and on PostgreSQL -------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStore]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with Workspace.init(tmp_path / "ws", database_url=url) as ws:
        yield AlertStore(ws)


def test_recording_twice_keeps_one_record_per_window_rule_column_and_method(store: AlertStore) -> None:
    alerts = evaluate_rules(monitored())
    assert store.record(alerts) == alerts
    assert store.record(alerts) == []
    assert store.record([*alerts, *alerts]) == []
    stored = store.list()
    assert len(stored) == len(alerts) == len({a.id for a in stored})
    assert all(isinstance(a, StoredAlert) and a.delivered_at is None for a in stored)


def test_unrecorded_tells_what_record_would_add_and_writes_nothing(store: AlertStore) -> None:
    alerts = evaluate_rules(monitored())
    assert store.unrecorded(alerts) == alerts and store.list() == []
    store.record(alerts[:2])
    assert store.unrecorded(alerts) == alerts[2:]
    assert (
        store.unrecorded([replace(alerts[0], window_start=WEEK1.astimezone(timezone(timedelta(hours=2))))])
        == []
    )
    assert store.unrecorded([replace(alerts[0], version=4)]) == [replace(alerts[0], version=4)]
    assert len(store.list()) == 2


def test_a_new_window_or_rule_is_recorded_next_to_the_old_ones(store: AlertStore) -> None:
    first = evaluate_rules(monitored())
    store.record(first)
    later = replace(first[0], window_start=WEEK2 + timedelta(weeks=1), message="again")
    other_rule = replace(first[0], rule="my_drift")
    assert store.record([first[0], later, other_rule]) == [later, other_rule]


def test_stored_alerts_read_back_as_written(store: AlertStore) -> None:
    alert = evaluate_rules(monitored())[0]
    store.record([alert])
    (stored,) = store.list()
    assert Alert(**{f: getattr(stored, f) for f in Alert.__dataclass_fields__}) == alert
    assert stored.window_start.tzinfo is not None
    assert stored.created_at <= datetime.now(UTC)


def test_an_unbounded_statistic_is_stored(store: AlertStore) -> None:
    alert = replace(evaluate_rules(monitored())[0], statistic=float("inf"))
    store.record([alert])
    assert store.list()[0].statistic == float("inf")


def test_list_filters_by_model_version_and_window_newest_first(store: AlertStore) -> None:
    alerts = evaluate_rules(monitored())
    store.record([*alerts, *(replace(a, version=4) for a in alerts), replace(alerts[0], model="other")])
    assert len(store.list(model="flights", version=3)) == len(alerts)
    assert [a.model for a in store.list(model="other")] == ["other"]
    assert [a.window_start for a in store.list(model="flights", version=4)] == [WEEK2] + [WEEK1] * 4
    assert {a.window_start for a in store.list(since=WEEK2)} == {WEEK2}
    assert len(store.list(limit=3)) == 3
    with pytest.raises(InvalidInputError, match="limit must be a positive number"):
        store.list(limit=0)


def test_naive_times_are_refused(store: AlertStore) -> None:
    alert = evaluate_rules(monitored())[0]
    with pytest.raises(InvalidInputError, match="window_start 2013-07-08 00:00:00 has no time zone"):
        store.record([replace(alert, window_start=WEEK1.replace(tzinfo=None))])
    with pytest.raises(InvalidInputError, match=r"since .* has no time zone"):
        store.list(since=datetime(2013, 7, 1))
    assert store.list() == []


def test_mark_delivered_counts_only_pending_alerts(store: AlertStore) -> None:
    store.record(evaluate_rules(monitored()))
    ids = [a.id for a in store.pending()]
    assert store.mark_delivered(ids[:2]) == 2
    assert store.mark_delivered(ids[:3]) == 1
    assert store.mark_delivered([]) == 0
    assert [a.id for a in store.pending()] == ids[3:]
    assert store.count_pending() == len(ids) - 3
    assert all(a.delivered_at is not None for a in store.list() if a.id in ids[:3])


# --- webhook delivery against a real local HTTP server --------------------------------------------


class Hook(ThreadingHTTPServer):
    """Records every POST; answers with the queued statuses, then 200; ``hang`` makes it stall."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.hang = False
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"


class _HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.hang:
            self.server.release.wait()
            return
        self.server.bodies.append(json.loads(body))
        self.server.headers.append(dict(self.headers))
        self.send_response(self.server.statuses.pop(0) if self.server.statuses else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def sqlite_store(workspace: Workspace) -> AlertStore:
    return AlertStore(workspace)


def test_pending_alerts_are_posted_once_in_one_body(sqlite_store: AlertStore, hook: Hook) -> None:
    alerts = evaluate_rules(monitored())
    sqlite_store.record(alerts)
    report = deliver_pending(sqlite_store, hook.url, token="s3cret")
    assert (report.delivered, report.pending, report.error) == (len(alerts), 0, "")
    (body,) = hook.bodies
    assert [a["message"] for a in body["alerts"]] == [a.message for a in alerts]
    first = body["alerts"][0]
    assert first["window_start"] == "2013-07-08T00:00:00+00:00"
    assert (first["model"], first["version"], first["column"], first["statistic"]) == (
        "flights",
        3,
        "dep_hour",
        0.23,
    )
    assert hook.headers[0]["Authorization"] == "Bearer s3cret"
    assert deliver_pending(sqlite_store, hook.url).delivered == 0
    assert len(hook.bodies) == 1
    assert sqlite_store.pending() == []


def test_a_failing_webhook_leaves_alerts_pending_until_a_later_run(
    sqlite_store: AlertStore, hook: Hook
) -> None:
    alerts = evaluate_rules(monitored())
    sqlite_store.record(alerts)
    hook.statuses = [500]
    failed = deliver_pending(sqlite_store, hook.url)
    assert (failed.delivered, failed.pending) == (0, len(alerts))
    assert failed.error == f"webhook {hook.url} answered HTTP 500"
    assert sqlite_store.count_pending() == len(alerts)
    retried = deliver_pending(sqlite_store, hook.url)
    assert (retried.delivered, retried.pending) == (len(alerts), 0)
    assert len(hook.bodies) == 2
    assert hook.bodies[0] == hook.bodies[1]


def test_alerts_go_in_batches_and_a_failure_stops_the_rest(sqlite_store: AlertStore, hook: Hook) -> None:
    sqlite_store.record(evaluate_rules(monitored()))  # five alerts
    hook.statuses = [200, 404]
    report = deliver_pending(sqlite_store, hook.url, batch_size=2)
    assert (report.delivered, report.pending) == (2, 3)
    assert "HTTP 404" in report.error
    assert deliver_pending(sqlite_store, hook.url, batch_size=2).delivered == 3
    assert [len(b["alerts"]) for b in hook.bodies] == [2, 2, 2, 1]


def test_an_unreachable_webhook_leaves_alerts_pending(sqlite_store: AlertStore) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    sqlite_store.record(evaluate_rules(monitored()))
    report = deliver_pending(sqlite_store, f"http://127.0.0.1:{port}/alerts")
    assert (report.delivered, report.pending) == (0, 5)
    assert report.error.startswith(f"webhook http://127.0.0.1:{port}/alerts unreachable: ConnectError")


def test_a_webhook_that_does_not_answer_in_time_is_a_failed_delivery(hook: Hook) -> None:
    hook.hang = True
    delivery = post_webhook(hook.url, evaluate_rules(monitored()), timeout=0.2)
    assert (delivery.ok, delivery.status) == (False, None)
    assert "ReadTimeout" in delivery.error


def test_non_finite_statistics_travel_as_null(hook: Hook) -> None:
    alert = replace(evaluate_rules(monitored())[0], statistic=float("inf"))
    assert post_webhook(hook.url, [alert]).ok
    assert hook.bodies[0]["alerts"][0]["statistic"] is None


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "hooks.example.com/x", "http://", "http://[::1"])
def test_a_webhook_url_must_be_http_or_https(sqlite_store: AlertStore, url: str) -> None:
    with pytest.raises(InvalidInputError, match="webhook url"):
        post_webhook(url, [])
    with pytest.raises(InvalidInputError, match="webhook url"):
        deliver_pending(sqlite_store, url)
