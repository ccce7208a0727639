"""The demo, end to end, as a user runs it: real data, real training, real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mlprod.data import TableStore, collect_garbage
from mlprod.demo.flights import CONTEXT_FEATURES
from mlprod.evaluate import latest_reports, list_leaderboards
from mlprod.models import Registry, list_runs
from mlprod.monitor import AlertStore
from mlprod.serve import RouteStore, read_prediction_log
from mlprod.workspace import Workspace

SMALL = ["--requests", "40", "--rounds", "30", "--sample", "0.1"]


def run_demo(workspace: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlprod", "-C", str(workspace), "demo", *SMALL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "300"},  # wide enough that no table wraps a cell
    )


def summary_value(stdout: str, label: str) -> str:
    match = re.search(rf"│ {re.escape(label)}\s*│ (.+?)\s*│", stdout)
    assert match, f"{label!r} not in summary:\n{stdout}"
    return match.group(1)


@pytest.mark.e2e
def test_demo_runs_end_to_end_on_a_small_slice(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    result = run_demo(workspace)
    assert result.returncode == 0, result.stderr
    assert f"workspace: {workspace}" in result.stderr
    auc = float(summary_value(result.stdout, "AUC on July (champion)").split()[0])
    assert 0.55 < auc < 0.9  # schedule features carry real but limited signal
    assert summary_value(result.stdout, "HTTP requests") == "40 (0 failed); routing revision 1"
    assert summary_value(result.stdout, "flights 2013-02 committed").startswith("2,488 rows, 0 quarantined")
    assert "26 rows corrected on a branch" in summary_value(result.stdout, "June corrections merged")
    assert summary_value(result.stdout, "predictions logged") == "80 (shadow copies included)"
    assert summary_value(result.stdout, "served vs in-process") == "max |difference| 0.00e+00"
    routes = dict(re.findall(r"route (champion|canary|shadow) \(v\d+\)\s+│\s+(\d+)", result.stdout))
    assert int(routes["champion"]) + int(routes.get("canary", 0)) == 40 and int(routes["shadow"]) == 40
    assert int(routes["champion"]) > 0 and int(routes.get("canary", 0)) < 20  # a 10 % canary
    champion = re.search(r"route champion \(v\d+\)\s+│ (.+?)\s*│", result.stdout)
    assert champion, result.stdout
    p50, p99 = re.findall(r"([\d.]+) ms", champion.group(1))
    assert 0 < float(p50) <= float(p99)
    assert "profile accuracy-first · set july" in result.stdout and "profile edge · set july" in result.stdout
    assert summary_value(result.stdout, "gate: lightgbm-small vs logistic").startswith(("pass: ", "fail: "))
    monitoring = summary_value(result.stdout, "monitoring (Aug-Dec, weekly)")
    assert re.search(r"reference: July, [\d,]+ flights; [\d,]+ predictions replayed", monitoring), monitoring
    assert monitoring.endswith("labels arrived (flight-labels)"), monitoring
    checked = summary_value(result.stdout, "alerts (monitor check)")
    alerts = re.fullmatch(r"21 whole weeks, 2 partial \(no alerts\); (\d+) alerts, (\d+) new", checked)
    assert alerts and alerts[1] == alerts[2], checked
    weeks = re.findall(r"│ (2013-\d\d-\d\d)(?: \(partial\))? +│ +[\d,]+ +│ +([\d,]+) +│", result.stdout)
    assert weeks[0][0] == "2013-07-29" and weeks[-1][0] == "2013-12-30"  # both partial: Aug 1, Jan 2
    assert all(labelled == "0" for week, labelled in weeks if week >= "2013-12-02")  # December: no labels yet
    assert "mean |difference|" in summary_value(result.stdout, "estimated vs realized accuracy")
    report = Path(summary_value(result.stdout, "monitoring report"))
    assert report.is_file() and report.read_text().count("<svg") >= 3
    _cli_report_equals_the_demos(workspace, result.stdout, int(alerts[1]))

    with Workspace.open(workspace) as ws:
        tables = TableStore(ws)
        trained_on = tables.resolve("flights", "jan-jun")
        assert trained_on.num_rows == 16_512  # a tenth of January to June 2013
        messages = [c.message for c in tables.log("flights")]
        assert messages[:5] == [f"flights of 2013-{m:02d}" for m in range(12, 7, -1)]  # monitored months
        assert messages[5:7] == [
            "merge June corrections",
            "remove rows flagged in flights of 2013-07 after review",
        ]
        assert [f"flights of 2013-{m:02d}" for m in range(7, 0, -1)] == messages[7:14]
        quarantine = tables.checkout("flights.quarantine").column("month").to_pylist()
        assert quarantine.count(7) == 15  # July's sentinel delays
        assert tables.checkout("flights", "jan-jun").num_rows == 16_512
        registry = Registry(ws)
        champion = registry.get("flights-delay@champion")
        assert champion.lineage["dataset_commit"] == trained_on.id
        assert champion.lineage["dataset_ref"] == "jan-jun"
        runs = list_runs(ws, model="flights-delay")
        assert len(runs) == 4 and {r.status for r in runs} == {"finished"}
        labels = {registry.tags(f"flights-delay/{r.model_version}")["candidate"] for r in runs}
        assert labels == {"logistic", "lightgbm-small", "lightgbm", "xgboost"}
        assert registry.export_of(champion, "onnx").parity_max_abs_diff <= 1e-5
        champion_moves = [m for m in registry.alias_history("flights-delay") if m.alias == "champion"]
        assert len(champion_moves) == 1 and champion_moves[-1].to_version == champion.version
        assert champion_moves[-1].why.startswith("chosen by the gate under 'accuracy-first' on july")
        reports = latest_reports(ws, "july")
        evaluated = next(c.id for c in tables.log("flights") if c.message == "merge June corrections")
        assert len(reports) == 4 and {r.dataset_commit for r in reports} == {evaluated}
        assert {b["profile"] for b in list_leaderboards(ws, evaluation_set="july")} == {
            "accuracy-first",
            "edge",
        }
        everything = read_prediction_log(ws.prediction_log_dir).to_pandas()
        replayed = everything[everything["request_id"].str.startswith("replay-")]
        assert len(replayed) == int(monitoring.split(" predictions replayed")[0].split()[-1].replace(",", ""))
        assert set(replayed["version"]) == {champion.version} and set(replayed["route"]) == {"champion"}
        first, last = replayed["time"].min(), replayed["time"].max()
        assert first.month == 8 and last < pd.Timestamp("2014-01-02", tz="UTC")
        log = everything[~everything["request_id"].str.startswith("replay-")]
        assert len(log) == 80  # 40 answers and their 40 shadow copies
        answered = log[log["route"] != "shadow"]
        assert set(answered.loc[answered["route"] == "champion", "version"]) == {champion.version}
        assert (log["route"] == "shadow").sum() == 40 and log["request_id"].nunique() == 40
        assert RouteStore(ws).history("flights-delay")[0].why.startswith("mlprod demo: canary")


def _monitoring_rows(output: str) -> list[list[str]]:
    """Window, rows, labelled, estimated and realized accuracy of each row of a monitoring table.

    The drift and quality columns are left out: KS and Wasserstein come from randomized KLL sketches,
    so a column near its threshold may alarm in one run and not in the next.
    """
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines()]
    return [r[:3] + r[5:] for r in rows if r and re.match(r"2013-\d\d-\d\d", r[0])]


def _cli_report_equals_the_demos(workspace: Path, demo_stdout: str, demo_alerts: int) -> None:
    """The report command the demo prints shows the demo's windows and accuracies and records nothing;
    a check records exactly what it says it records."""
    explore = re.search(r"(mlprod monitor report [^;\n]+)", demo_stdout)
    assert explore and "--labels flight-labels" in explore[1], demo_stdout
    args = explore[1].split()[1:]
    env = {**os.environ, "COLUMNS": "300"}

    def mlprod(*command: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mlprod", "-C", str(workspace), *command],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def recorded() -> int:
        with Workspace.open(workspace) as ws:
            return len(AlertStore(ws).list(limit=100_000))

    assert recorded() == demo_alerts
    report = mlprod(*args)
    demo_rows = _monitoring_rows(demo_stdout.split("by week (reference: July)")[1])
    assert _monitoring_rows(report) == demo_rows
    assert sum(row[4] not in ("-", "") for row in demo_rows) >= 15  # realized accuracy for Aug-Nov
    counts = re.search(r"^(\d+) alert\(s\), (\d+) not recorded yet", report, re.MULTILINE)
    assert counts, report
    # KS and Wasserstein come from randomized KLL sketches: a statistic at its threshold may flip
    assert abs(int(counts[1]) - demo_alerts) <= 5 and int(counts[2]) <= 5
    assert recorded() == demo_alerts  # the report recorded nothing
    checked = re.search(
        r"21 whole window\(s\) checked, 2 partial; \d+ alert\(s\), (\d+) new recorded",
        mlprod("monitor", "check", *args[2:]),
    )
    assert checked and int(checked[1]) <= 5 and recorded() == demo_alerts + int(checked[1])


@pytest.mark.e2e
def test_demo_without_a_workspace_uses_the_cache_directory(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "mlprod", "demo", *SMALL],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"workspace: {tmp_path / 'cache' / 'mlprod' / 'demo'}" in result.stderr
    assert (tmp_path / "cache" / "mlprod" / "demo" / "mlprod.toml").is_file()


@pytest.mark.e2e
def test_kill_9_at_any_point_then_rerun_works(tmp_path: Path) -> None:
    """SIGKILL the demo at several moments; every rerun must succeed on the same workspace."""
    workspace = tmp_path / "demo"
    killed_at = []
    for delay in (0.3, 1.0, 2.0, 3.0, 4.5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlprod", "-C", str(workspace), "demo", *SMALL, "--requests", "400"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at.append(delay)
        proc.wait()
    assert killed_at, "the demo finished before any kill; nothing was tested"

    result = run_demo(workspace)
    assert result.returncode == 0, result.stderr
    with Workspace.open(workspace) as ws:
        registry = Registry(ws)
        champion = registry.get("flights-delay@champion")
        assert registry.load(champion).predict_rows(
            [
                {
                    "day_of_week": 1,
                    "dep_hour": 8,
                    "arr_hour": 11,
                    "distance": 1000,
                    "carrier": "UA",
                    "origin": "EWR",
                    "dest": "ORD",
                }
                | dict.fromkeys(CONTEXT_FEATURES)  # features the store had no value for
            ]
        ).shape == (1,)
        history = [m for m in registry.alias_history("flights-delay") if m.alias == "champion"]
        assert history[-1].to_version == champion.version
        tables = TableStore(ws)
        messages = [c.message for c in tables.log("flights")]
        assert len(messages) == len(set(messages)) == 15  # create, 12 months, review, merge: each once
        collect_garbage(tables, grace_seconds=0)  # what killed writers left behind
        for sha in tables.objects:
            tables.objects.verify(sha)
        assert tables.checkout("flights").num_rows == tables.resolve("flights").num_rows
        for sha in ws.artifacts:
            ws.artifacts.verify(sha)  # no half-written blob anywhere
        log = read_prediction_log(ws.prediction_log_dir).to_pandas()  # every log file parses
        replayed = log[log["request_id"].str.startswith("replay-")]
        assert not replayed.duplicated(["version", "request_id"]).any()  # a resumed replay: each row once
