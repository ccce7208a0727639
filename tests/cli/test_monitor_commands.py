"""``mlprod monitor``: profile, report, check, alerts and predictions in a real workspace, and errors.

One template workspace serves the module: model ``m`` (numbers ``x1``, ``x2``, category ``c``) is
trained and profiled through the Python API, and three weeks of its predictions are logged, the
third with ``x1`` shifted, then the first hour of a fourth week, shifted further (a partial window);
half the labels of the first two weeks have arrived (``labels.parquet``). Model ``bare`` is
registered without a reference. Each test works on its own copy, since checks record alerts.

Importing ``mlprod.monitor`` costs a new interpreter about 3.5 s of CPU, so commands run in this
process through the ``main()`` the ``mlprod`` script calls (same parsing, exit codes, one-line
errors and output); one test runs the real entry point in subprocesses.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from mlprod.models import EstimatorSpec, Registry, train_classifier
from mlprod.monitor import AlertStore, ReferenceStore, profile_version
from mlprod.serve import PredictionLogWriter
from mlprod.workspace import Workspace
from tests.cli.conftest import Run
from tests.monitor.test_version_monitor import flights_like

MONDAY = datetime(2013, 7, 1, tzinfo=UTC)
WEEK_ROWS = 1500
SHIFTED_WEEK = 2
PARTIAL_ROWS = 60


@dataclass(frozen=True)
class Template:
    root: Path
    files: Path
    realized: list[float]  # accuracy on the arrived labels of weeks 0 and 1 (threshold 0.5)
    mean_score: float


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    base = tmp_path_factory.mktemp("monitor-cli")
    files = base / "files"
    files.mkdir()
    reference = flights_like(2000, 1)
    reference.to_parquet(files / "ref.parquet")
    reference.drop(columns="y").to_csv(files / "ref.csv", index=False)
    (files / "ref.json").write_text("{}")
    with Workspace.init(base / "ws") as ws:
        trained = train_classifier(
            flights_like(3000, 0), label="y", numeric=["x1", "x2"], categorical=["c"],
            estimator=EstimatorSpec("lightgbm", {"n_estimators": 20}),
        )  # fmt: skip
        registry = Registry(ws)
        for name in ("m", "bare"):
            registry.register(name, trained.model, signature=trained.signature)
            registry.set_alias(name, "champion", 1)
        profile_version(ws, "m@champion", pa.Table.from_pandas(flights_like(2500, 2)), label="y")
        model = registry.load("m/1")
        writer = PredictionLogWriter(ws.prediction_log_dir, flush_interval=3600)
        ids: list[str] = []
        labels: list[int] = []
        realized: list[float] = []
        logged: list[float] = []
        for week in range(4):
            size, shift = (PARTIAL_ROWS, 3.0) if week == 3 else (WEEK_ROWS, 1.5 * (week == SHIFTED_WEEK))
            rows = flights_like(size, 10 + week, shift=shift)
            scores = model.predict_frame(rows)
            logged += scores.tolist()
            for i, (row, score) in enumerate(zip(rows.to_dict("records"), scores, strict=True)):
                writer.append(
                    request_id=f"w{week}-{i}", model="m", version=1, route="champion",
                    inputs=[{k: row[k] for k in ("x1", "x2", "c")}], predictions=[float(score)],
                    latency_ms=1.0, at=MONDAY + timedelta(weeks=week, seconds=i * 60),
                )  # fmt: skip
            if week < SHIFTED_WEEK:  # every other label of the first two weeks has arrived
                ids += [f"w{week}-{i}" for i in range(0, WEEK_ROWS, 2)]
                labels += rows["y"].iloc[::2].tolist()
                realized.append(float(np.mean((scores[::2] >= 0.5) == rows["y"].to_numpy()[::2])))
        writer.close()
    table = pa.table({"request_id": ids, "y": labels})
    pq.write_table(table, files / "labels.parquet")
    (files / "labels.json").write_text(json.dumps(table.to_pylist()))
    return Template(base / "ws", files, realized, float(np.mean(logged)))


@pytest.fixture
def root(template: Template, tmp_path: Path) -> Path:
    """A private copy of the template workspace."""
    return Path(shutil.copytree(template.root, tmp_path / "ws"))


def _ok(done: CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def _fails(done: CompletedProcess[str], message: str) -> None:
    """A user error: exit 2, nothing on stdout, one line ``error: ...`` on stderr naming the problem."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert done.stdout == ""


def _rows(output: str) -> list[list[str]]:
    """The body rows of the Rich table in ``output``, as stripped cells."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines() if "│" in line]


def _alarms(cell: str) -> tuple[int, list[str]]:
    """``3: x1, x2, prediction``: how many columns alarmed, and the strongest (up to three) by name."""
    found = re.fullmatch(r"(\d+): ([^+]+?)( \+\d+)?", cell)
    assert found, cell
    return int(found[1]), found[2].split(", ")


def _summary(output: str) -> tuple[int, int, Path]:
    """Alerts, alerts not recorded yet and the HTML path (on a line of its own) from the report's summary."""
    found = re.search(
        r"^(\d+) alert\(s\), (\d+) not recorded yet(?: \(`mlprod monitor check` records them\))?; "
        r"HTML report:\n(.+)$",
        output,
        re.MULTILINE,
    )
    assert found, output
    return int(found[1]), int(found[2]), Path(found[3])


def _checked(output: str) -> tuple[int, int, int, int]:
    """Whole and partial windows, alerts and new alerts from ``monitor check``'s summary line."""
    found = re.search(
        r"^m/1: (\d+) whole window\(s\) checked, (\d+) partial; (\d+) alert\(s\), (\d+) new recorded",
        output,
        re.MULTILINE,
    )
    assert found, output
    return int(found[1]), int(found[2]), int(found[3]), int(found[4])


def _database(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the workspace's metadata database, in a stable order."""
    with Workspace.open(root) as ws:
        tables = sa.MetaData()
        tables.reflect(ws.engine)
        with ws.engine.connect() as conn:
            return {
                name: sorted((tuple(row) for row in conn.execute(table.select())), key=repr)
                for name, table in tables.tables.items()
            }


def test_profile_builds_a_reference_from_parquet_or_csv(cli: Run, root: Path, template: Template) -> None:
    parquet = cli(
        "monitor", "profile", "--model", "m@champion", "--data", str(template.files / "ref.parquet"),
        "--label", "y", cwd=root,
    )  # fmt: skip
    assert _ok(parquet) == (
        "reference of m/1: 2,000 rows, 3 features, performance estimation on, PCA detector (1 component)\n"
    )
    csv = cli(
        "monitor", "profile", "-m", "bare@champion", "--data", str(template.files / "ref.csv"), cwd=root
    )
    assert (
        _ok(csv)
        == "reference of bare/1: 2,000 rows, 3 features, no labels: drift only, PCA detector (1 component)\n"
    )
    with Workspace.open(root) as ws:
        m, bare = ReferenceStore(ws).load("m", 1), ReferenceStore(ws).load("bare", 1)
    assert (m.profile.rows, m.estimator is not None, m.multivariate is not None) == (2000, True, True)
    assert (bare.profile.rows, bare.estimator) == (2000, None)


def test_profile_errors_are_one_line(cli: Run, root: Path, template: Template) -> None:
    ref = str(template.files / "ref.parquet")

    def profile(*args: str) -> CompletedProcess[str]:
        return cli("monitor", "profile", *args, cwd=root)

    _fails(
        profile("-m", "m@champion", "--data", str(template.files / "ref.json")),
        "ref.json: expected a .parquet or .csv file",
    )
    _fails(
        profile("-m", "m@champion", "--data", str(template.files / "nope.parquet")),
        "nope.parquet is not a file",
    )
    _fails(
        profile("-m", "nobody@champion", "--data", ref), "model 'nobody' is not registered (models: bare, m)"
    )
    _fails(profile("-m", "m@champion", "--data", ref, "--label", "delayed"), "no label column 'delayed'")
    with Workspace.open(root) as ws:
        assert ReferenceStore(ws).load("m", 1).profile.rows == 2500  # the template's, untouched


def test_report_prints_windows_and_writes_html_but_records_and_sends_nothing(
    cli: Run, root: Path, template: Template, tmp_path: Path, webhook: tuple[str, list[Any]]
) -> None:
    url, received = webhook
    before = _database(root)
    report = ("monitor", "report", "--model", "m@champion", "--by", "week")
    labelled = ("--labels", str(template.files / "labels.parquet"), "--label-column", "y")
    first = _ok(cli(*report, *labelled, cwd=root, env={"MLPROD_MONITOR_WEBHOOK_URL": url}))

    rows = _rows(first)
    assert [r[:3] for r in rows] == [
        ["2013-07-01", "1,500", "750"], ["2013-07-08", "1,500", "750"], ["2013-07-15", "1,500", "0"],
        ["2013-07-22 (partial)", "60", "0"],
    ]  # fmt: skip
    assert [r[3] for r in rows[:2]] == ["-", "-"]
    drift, quality = _alarms(rows[2][3]), _alarms(rows[2][4])
    assert drift[1][0] == "x1" and {"x1", "x2", "prediction"} <= set(drift[1]) and drift[0] >= 3
    assert [r[4] for r in rows[:2]] == ["-", "-"] and "x1" in quality[1]  # shifted x1 leaves its range
    assert "x1" in _alarms(rows[3][3])[1]  # the partial week's checks are shown; it raises no alert
    for row, realized in zip(rows[:2], template.realized, strict=True):
        estimate = re.fullmatch(r"(0\.\d{3}) \[(0\.\d{3}), (0\.\d{3})\]", row[5])
        assert estimate, row
        assert float(estimate[2]) <= float(estimate[1]) <= float(estimate[3])
        assert float(row[6]) == pytest.approx(realized, abs=0.003)  # binned scores, 3 decimals printed
    assert re.fullmatch(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", rows[2][5]) and rows[2][6] == "-"
    assert "1 partial window(s): not covered whole by the range read, they raise no alert\n" in first

    alerts, unrecorded, html = _summary(first)
    assert alerts == unrecorded > 0 and "(`mlprod monitor check` records them)" in first
    assert html == root / "reports" / "monitor-m-v1-week.html"
    assert "<title>Monitoring report: m v1</title>" in html.read_text()
    again = _ok(cli(*report, *labelled, "--html", str(tmp_path / "out" / "r.html"), cwd=root))
    assert _summary(again) == (alerts, alerts, tmp_path / "out" / "r.html")
    assert (tmp_path / "out" / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert _database(root) == before and received == []  # every table as it was; the webhook not called
    assert _ok(cli("monitor", "alerts", cwd=root)) == "no alerts recorded\n"


def test_check_records_and_sends_each_alert_once(
    cli: Run, root: Path, template: Template, webhook: tuple[str, list[Any]]
) -> None:
    url, received = webhook
    check = ("monitor", "check", "--model", "m@champion", "--labels", str(template.files / "labels.parquet"))
    env = {"MLPROD_MONITOR_WEBHOOK_URL": url}
    first = _ok(cli(*check, "--label-column", "y", cwd=root, env=env))
    whole, partial, alerts, new = _checked(first)
    assert (whole, partial) == (3, 1) and alerts == new > 0
    assert f"webhook: {alerts} delivered\n" in first
    assert len(received) == 1 and len(received[0]["alerts"]) == alerts
    with Workspace.open(root) as ws:
        recorded = AlertStore(ws).list(model="m")
    assert len(recorded) == alerts
    assert {a.column for a in recorded if a.rule == "drift"} >= {"x1", "x2"}
    assert {a.window_start for a in recorded} <= {MONDAY + timedelta(weeks=k) for k in range(3)}
    assert {a.window_start for a in recorded if a.rule == "drift"} == {MONDAY + timedelta(weeks=2)}
    assert {a["id"] for a in received[0]["alerts"]} == {a.id for a in recorded}

    after_first = _database(root)
    again = _ok(cli(*check, "--label-column", "y", cwd=root, env=env))
    assert _checked(again) == (3, 1, alerts, 0) and "webhook: 0 delivered\n" in again
    assert len(received) == 1  # nothing sent twice
    assert _database(root) == after_first  # nothing recorded twice
    labels = ("--labels", str(template.files / "labels.parquet"), "--label-column", "y")
    report = _ok(cli("monitor", "report", "-m", "m@champion", *labels, cwd=root, env=env))
    assert _summary(report)[:2] == (alerts, 0) and "monitor check" not in report and len(received) == 1

    table = _rows(_ok(cli("monitor", "alerts", "--model", "m", cwd=root)))
    assert sorted(r[3] for r in table) == sorted(a.message for a in recorded)
    assert {(r[0], r[1]) for r in table if r[2] == "drift"} == {("2013-07-15 00:00", "m/1")}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", r[4]) for r in table)  # delivered at
    drift_x1 = r"drift on x1 \(wasserstein .+ > 0\.1, p .+ < 0\.01\) in week 2013-07-15"  # effect and p-value
    assert any(re.fullmatch(drift_x1, r[3]) for r in table)
    assert len(_rows(_ok(cli("monitor", "alerts", "--limit", "1", cwd=root)))) == 1
    _fails(cli("monitor", "alerts", "--limit", "0", cwd=root), "--limit must be positive, got 0")


def test_labels_from_a_versioned_table_give_what_the_file_gives(
    cli: Run, root: Path, template: Template
) -> None:
    file = str(template.files / "labels.parquet")
    _ok(cli("data", "create", "labels", "--key", "request_id", "--from", file, cwd=root))
    from_file = _rows(
        _ok(cli("monitor", "report", "-m", "m/1", "--labels", file, "--label-column", "y", cwd=root))
    )
    for source in ("labels", "labels@main"):
        from_table = _ok(
            cli("monitor", "report", "-m", "m/1", "--labels", source, "--label-column", "y", cwd=root)
        )
        assert _rows(from_table)[:2] == from_file[:2] and [r[2] for r in from_file] == [
            "750",
            "750",
            "0",
            "0",
        ]
    _fails(
        cli("monitor", "report", "-m", "m/1", "--labels", "lables", cwd=root),
        "labels 'lables' is neither a file nor a versioned table (tables: labels)",
    )
    _fails(cli("monitor", "check", "-m", "m/1", "--labels", "labels@nope", cwd=root), "nope")


def test_report_windows_by_row_count_and_by_time_range(cli: Run, root: Path) -> None:
    counted = _ok(cli("monitor", "report", "-m", "m/1", "--by", "1000", cwd=root))
    assert [r[:2] for r in _rows(counted)] == [
        ["2013-07-01", "1,000"], ["2013-07-01", "1,000"], ["2013-07-08", "1,000"], ["2013-07-15", "1,000"],
        ["2013-07-15 (partial)", "560"],
    ]  # fmt: skip
    assert _summary(counted)[2] == root / "reports" / "monitor-m-v1-1000-rows.html"
    assert (root / "reports" / "monitor-m-v1-1000-rows.html").is_file()
    ranged = _ok(
        cli("monitor", "report", "-m", "m/1", "--since", "2013-07-08", "--until", "2013-07-15", cwd=root)
    )
    rows = _rows(ranged)
    assert [r[:4] for r in rows] == [["2013-07-08", "1,500", "0", "-"]]
    assert rows[0][6] == "-" and "partial" not in ranged  # no labels given; a whole week
    late = _ok(cli("monitor", "report", "-m", "m/1", "--since", "2013-07-15T12:00:00+02:00", cwd=root))
    assert [r[:2] for r in _rows(late)] == [["2013-07-15 (partial)", "900"], ["2013-07-22 (partial)", "60"]]
    # The README's mistake: an --until one day into the next month used to add a junk window with alerts.
    monthly = ("monitor", "report", "-m", "m/1", "--by", "month", "--since", "2013-06-01")
    cut = _ok(cli(*monthly, "--until", "2013-08-02", cwd=root))
    assert [r[:2] for r in _rows(cut)] == [["2013-07-01 (partial)", "4,560"]]
    assert _summary(cut)[:2] == (0, 0)
    weekly = _ok(cli("monitor", "report", "-m", "m/1", "--until", "2013-07-22", cwd=root))
    assert [r[0] for r in _rows(weekly)] == ["2013-07-01", "2013-07-08", "2013-07-15"]
    assert _summary(weekly)[0] > 0


def test_report_errors_are_one_line(cli: Run, root: Path, template: Template) -> None:
    def report(*args: str) -> CompletedProcess[str]:
        return cli("monitor", "report", *args, cwd=root)

    _fails(
        report("-m", "m@champion", "--by", "fortnight"),
        "'fortnight' is not a window; use hour, day, week, month, quarter, year, N or rows:N",
    )
    _fails(
        report("-m", "m@champion", "--by", "chunks:4"),
        "window 4 chunks: chunk and column windows need the data first; over the prediction log",
    )
    _fails(
        report("-m", "m@champion", "--since", "last tuesday"),
        "--since 'last tuesday' is not a date or time; use e.g. 2013-08-01, 2013-08-01T08:00, ",
    )
    _fails(
        report("-m", "m@champion", "--labels", str(template.files / "labels.json")),
        "labels.json: expected a .parquet or .csv file",
    )
    _fails(report("-m", "m@champion", "--labels", str(template.files / "gone.csv")), "gone.csv is not a file")
    _fails(
        report("-m", "bare@champion"),
        "bare/1 has no monitoring reference; build one with `mlprod monitor profile --model bare/1",
    )
    _fails(
        report("-m", "m@champion", "--since", "2014-01-01"),
        "the prediction log has no rows of m/1 in that range",
    )
    assert not (root / "reports").exists()
    with Workspace.open(root) as ws:
        assert AlertStore(ws).list() == []


class _Hook(BaseHTTPRequestHandler):
    received: list[Any]

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[Any]]]:
    """A real HTTP server on a free local port; its URL and the JSON bodies POSTed to it."""
    received: list[Any] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join()


def _refused_url() -> str:
    with socket.socket() as probe:  # a port just freed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/hook"


def test_alerts_wait_for_a_refusing_webhook_and_reach_it_on_the_next_check(
    cli: Run, root: Path, webhook: tuple[str, list[Any]]
) -> None:
    url, received = webhook
    check = ("monitor", "check", "-m", "m@champion")

    refused_url = _refused_url()
    refused = cli(*check, cwd=root, env={"MLPROD_MONITOR_WEBHOOK_URL": refused_url})
    _, _, alerts, new = _checked(_ok(refused))
    assert alerts == new > 0
    pending = rf"^webhook: 0 delivered, {alerts} pending \(webhook {re.escape(refused_url)} unreachable: "
    assert re.search(pending + "ConnectError", refused.stderr, re.MULTILINE), refused.stderr
    assert "webhook:" not in refused.stdout and received == []

    delivered = cli(*check, cwd=root, env={"MLPROD_MONITOR_WEBHOOK_URL": url})
    assert _checked(_ok(delivered))[2:] == (alerts, 0)
    assert f"webhook: {alerts} delivered\n" in delivered.stdout and "webhook" not in delivered.stderr
    assert len(received) == 1 and len(received[0]["alerts"]) == alerts
    sent = received[0]["alerts"]
    assert {(a["model"], a["version"]) for a in sent} == {("m", 1)}
    drift = [a for a in sent if a["rule"] == "drift" and a["column"] == "x1"]
    assert len(drift) == 1 and drift[0]["window_start"] == "2013-07-15T00:00:00+00:00"
    assert drift[0]["message"].startswith("drift on x1 (wasserstein ")

    with Workspace.open(root) as ws:
        assert AlertStore(ws).count_pending() == 0
    table = _rows(_ok(cli("monitor", "alerts", cwd=root)))
    assert len(table) == alerts and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", r[4]) for r in table)


def test_predictions_and_errors_through_the_real_entry_point(
    mlprod: Run, cli: Run, root: Path, template: Template
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:  # interpreter start-up dominates; run both at once
        predictions, unprofiled = pool.map(
            lambda args: mlprod(*args, cwd=root),
            [("monitor", "predictions"), ("monitor", "report", "-m", "bare@champion")],
        )
    (row,) = _rows(_ok(predictions))
    assert row[:5] == ["m", "1", "4,560", "4,560", "07-01 00:00 to 07-22 00:59"]
    assert float(row[5]) == pytest.approx(template.mean_score, abs=5e-5) and row[6:] == ["1.00", "1.00"]
    _fails(unprofiled, "bare/1 has no monitoring reference")
    assert _ok(cli("monitor", "predictions", "--model", "bare", cwd=root)) == "no predictions logged yet\n"
    assert _ok(cli("monitor", "alerts", cwd=root)) == "no alerts recorded\n"
