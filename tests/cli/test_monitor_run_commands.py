"""``mlprod monitor run`` (no workspace, no registered model) and ``mlprod monitor import-log``.

The README's walkthrough "Monitor a model you already run" is run here command by command, exactly
as written, on small generated Parquet files. Commands run in this process through ``main()``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np
import pandas as pd
import pytest

from mlprod.models import ModelVersion
from mlprod.serve import read_prediction_log
from mlprod.workspace import Workspace

README = Path(__file__).resolve().parents[2] / "README.md"
Cli = Callable[..., CompletedProcess[str]]


def customers(n: int, seed: int, start: datetime, *, shift_after: int | None = None) -> pd.DataFrame:
    """A churn model's rows: id, features, its score, the label, and a daily timestamp."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, size=n)
    if shift_after is not None:
        tenure[shift_after:] += 30.0  # long-standing customers flood in
    fee = rng.normal(40, 10, size=n)
    plan = rng.choice(["basic", "plus", "pro"], size=n, p=[0.5, 0.3, 0.2])
    proba = 1 / (1 + np.exp(-(1.0 - 0.06 * tenure + 0.02 * (fee - 40))))
    churned = (rng.random(n) < proba).astype(float)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + seed * 100_000,
            "tenure": tenure,
            "plan": plan,
            "monthly_fee": fee,
            "proba": proba,
            "churned": churned,
            "ts": [start + timedelta(hours=2 * i) for i in range(n)],
        }
    )


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    """reference.parquet (Jan-Mar) and analysis.parquet (Apr-Jun: shifted from May, June unlabelled)."""
    customers(1080, 1, datetime(2024, 1, 1, tzinfo=UTC)).to_parquet(tmp_path / "reference.parquet")
    analysis = customers(1092, 2, datetime(2024, 4, 1, tzinfo=UTC), shift_after=360)
    analysis.loc[analysis["ts"] >= datetime(2024, 6, 1, tzinfo=UTC), "churned"] = np.nan
    analysis.to_parquet(tmp_path / "analysis.parquet")
    return tmp_path


def readme_commands(block: int) -> list[list[str]]:
    """The ``mlprod`` commands of the ``block``-th bash block of the README section, as arguments."""
    text = README.read_text()
    section = text[text.index("## Monitor a model you already run") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [shlex.split(line)[1:] for line in blocks[block].splitlines() if line.startswith("mlprod ")]


def test_the_readme_walkthrough_goes_from_two_parquet_files_to_the_report(cli: Cli, two_files: Path) -> None:
    monthly, chunks = readme_commands(0)
    done = cli(*monthly, cwd=two_files)
    assert done.returncode == 0, done.stderr
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│ 2024-" in line}
    assert list(lines) == ["2024-04-01", "2024-05-01", "2024-06-01"]
    assert "tenure" not in lines["2024-04-01"] and "tenure" in lines["2024-05-01"]  # the planted shift
    assert "features: tenure, monthly_fee, plan" in done.stdout
    page = (two_files / "report.html").read_text()
    assert (
        page.startswith("<!DOCTYPE html>") and "month 2024-05" in page and "Monitoring report: model" in page
    )

    done = cli(*chunks, cwd=two_files)
    assert done.returncode == 0, done.stderr
    windows = json.loads(done.stdout)
    assert [w["rows"] for w in windows] == [273, 273, 273, 273]
    assert windows[0]["window"] == "chunk 1/4 (rows 0-272)" and windows[0]["start"] is None
    assert "tenure" not in windows[0]["drift"] and "tenure" in windows[3]["drift"]
    assert windows[3]["accuracy_realized"] is None and windows[3]["accuracy_estimated"] is not None
    assert sorted(p.name for p in two_files.iterdir()) == [
        "analysis.parquet",
        "reference.parquet",
        "report.html",
    ]


def test_thresholds_come_from_a_workspace_config_when_there_is_one(cli: Cli, two_files: Path) -> None:
    (two_files / "mlprod.toml").write_text("[monitor]\nwasserstein = 1000.0\npsi = 1000.0\n")
    monthly, _ = readme_commands(0)
    done = cli(*monthly, cwd=two_files)
    assert done.returncode == 0, done.stderr
    assert "tenure" not in done.stdout.split("features:")[0]  # the shift stays under the raised thresholds
    written = sorted(p.name for p in two_files.iterdir())
    assert written == ["analysis.parquet", "mlprod.toml", "reference.parquet", "report.html"]  # no database
    elsewhere = cli("-C", str(two_files / "nowhere"), *monthly, cwd=two_files)
    assert elsewhere.returncode == 2 and "is not an mlprod workspace" in elsewhere.stderr


def test_fairness_by_a_group_column_comes_per_window(cli: Cli, two_files: Path) -> None:
    done = cli(
        "monitor", "run", "--reference", "reference.parquet", "--analysis", "analysis.parquet",
        "--score", "proba", "--label", "churned", "--ignore", "customer_id,ts", "--groups", "plan",
        "--window", "chunks:2", "--format", "json", cwd=two_files,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)[0]["fairness"]["plan"]
    analysis = pd.read_parquet(two_files / "analysis.parquet").iloc[:546]
    rates = (analysis["proba"] >= 0.5).groupby(analysis["plan"]).mean()
    assert first["dp_difference"] == pytest.approx(rates.max() - rates.min())
    table = cli("monitor", "run", "--reference", "reference.parquet", "--analysis", "analysis.parquet",
                "--score", "proba", "--label", "churned", "--ignore", "customer_id,ts", "--groups", "plan",
                "--window", "chunks:2", "--report", "fair.html", cwd=two_files)  # fmt: skip
    assert "fairness by plan" in table.stdout and "demographic parity diff." in table.stdout
    page = (two_files / "fair.html").read_text()
    assert '<section id="fairness">' in page and "basic (" in page and f"{first['dp_difference']:.3f}" in page
    assert page.rstrip().endswith("</body></html>") and "<script" not in page


def test_realized_accuracy_in_csv_is_the_share_of_right_predictions(cli: Cli, two_files: Path) -> None:
    done = cli(
        "monitor", "run", "--reference", "reference.parquet", "--analysis", "analysis.parquet",
        "--score", "proba", "--label", "churned", "--features", "tenure,plan", "--window", "by:plan",
        "--format", "csv", cwd=two_files,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    analysis = pd.read_parquet(two_files / "analysis.parquet").dropna(subset=["churned"])
    for row in rows:
        plan = row["window"].removeprefix("plan ")
        group = analysis[analysis["plan"] == plan]
        expected = ((group["proba"] >= 0.5) == (group["churned"] == 1)).mean()
        assert float(row["accuracy_realized"]) == pytest.approx(expected)
    assert [r["window"] for r in rows] == ["plan basic", "plan plus", "plan pro"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "churned"], "name the model's output: a score column"),
        (["--score", "probability"], "reference: no score column 'probability'"),
        (["--score", "proba", "--window", "fortnight"], "window 'fortnight' is not a window"),
        (["--score", "proba", "--window", "chunks:0"], "the number of chunks must be at least 1, got 0"),
        (
            ["--score", "proba", "--window", "month", "--ignore", "ts"],
            "calendar windows need each row's time",
        ),
        (["--score", "plan"], "score column 'plan' is text; it must hold a probability of class 1"),
        (["--score", "proba", "--features", ","], "--features: no column named"),
        (
            ["--score", "proba", "--features", "tenure,plann"],
            "no feature column 'plann' (did you mean 'plan'?)",
        ),
    ],
)
def test_bad_options_fail_with_one_line(cli: Cli, two_files: Path, args: list[str], message: str) -> None:
    base = ["monitor", "run", "--reference", "reference.parquet", "--analysis", "analysis.parquet"]
    done = cli(*base, *args, cwd=two_files)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


def test_import_log_adds_rows_once(
    cli: Cli, workspace: Workspace, registered: ModelVersion, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(30)],
            "ts": [start + timedelta(minutes=i) for i in range(30)],
            "x": rng.normal(size=30),
            "c": rng.choice(["a", "b", "c"], size=30),
            "proba": rng.uniform(size=30),
        }
    ).to_parquet(tmp_path / "edge.parquet")
    args = ["-C", str(workspace.root), "monitor", "import-log", "toy/1", "edge.parquet", "--time", "ts",
            "--prediction", "proba", "--request-id", "request_id"]  # fmt: skip
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "toy/1: 30 of 30 row(s) imported, 30 request(s)" in first.stdout
    again = cli(*args, cwd=tmp_path)
    assert "toy/1: 0 of 30 row(s) imported, 30 request(s), 30 already logged (skipped)" in again.stdout
    assert read_prediction_log(workspace.prediction_log_dir).num_rows == 30
    bad = cli(*args[:-1], "requestid", cwd=tmp_path)
    assert (
        bad.returncode == 2 and "no request id column 'requestid' (did you mean 'request_id'?)" in bad.stderr
    )
