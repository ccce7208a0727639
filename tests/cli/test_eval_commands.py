"""``mlprod eval``: sets, profiles, run, show, leaderboard and gate in a real workspace, and their errors.

One workspace serves the module: the three candidates of ``tests.evaluate.evaluated_workspace`` are
trained, ``linear`` and ``small`` are evaluated on ``later`` through the Python API (quick options,
serving cost measured, so that the ``edge`` profile has every metric it weighs; ``large`` is never
evaluated), and every command then runs in a subprocess as a user would. ``linear`` is the better
model on ``later``: higher AUC, lower log loss, a better worst slice; ``small`` is only faster.

Interpreter start-up dominates a command's time, so invocations that do not depend on each other
run a few at a time (the metadata database is SQLite in WAL mode with a busy timeout).
"""

from __future__ import annotations

import csv
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pandas as pd
import pytest

from mlprod.data import TableStore
from mlprod.evaluate import EvaluationReport, evaluate_model
from mlprod.workspace import Workspace
from tests.cli.conftest import Run
from tests.evaluate.evaluated_workspace import QUICK, START, events, prepare

LATER_ROWS = int((events()["week"] >= 4).sum())


@dataclass(frozen=True)
class Evaluated:
    root: Path
    refs: dict[str, str]
    reports: dict[str, EvaluationReport]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    root = tmp_path_factory.mktemp("eval-cli") / "ws"
    with Workspace.init(root) as ws:
        refs = prepare(ws)
        reports = {
            label: evaluate_model(ws, refs[label], "later", options=QUICK) for label in ("linear", "small")
        }
    return Evaluated(root, refs, reports)


def _together(mlprod: Run, root: Path, *commands: tuple[str, ...]) -> list[CompletedProcess[str]]:
    """Run independent invocations concurrently; results in the order of ``commands``."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda args: mlprod(*args, cwd=root), commands))


def _fails(done: CompletedProcess[str], message: str) -> None:
    """A user error: exit 2, nothing on stdout, one line ``error: ...`` on stderr naming the problem."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert done.stdout == ""


def _json(done: CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _row(output: str, cell: str, column: int = 0) -> list[str]:
    """The cells of the Rich table row whose cell in ``column`` is ``cell``."""
    for line in output.splitlines():
        cells = [text.strip() for text in line.split("│")[1:-1]]
        if len(cells) > column and cells[column] == cell:
            return cells
    raise AssertionError(f"no row with {cell!r} in column {column} in:\n{output}")


def test_add_set_declares_a_set_that_sets_lists_and_run_evaluates(mlprod: Run, evaluated: Evaluated) -> None:
    root = evaluated.root
    added = mlprod(
        "eval", "add-set", "july2", "--table", "events", "--time", "ts", "--start", "2026-02-02",
        "--slice", "c", "--fairness", "group", cwd=root,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    with Workspace.open(root) as ws:
        main = TableStore(ws).resolve("events", "main").id
    pinned = f"events@main (pinned at {main[:12]})"
    assert added.stdout.strip() == f"evaluation set july2: {pinned}, ts in ['2026-02-02', None)"
    config = (root / "mlprod.toml").read_text()
    assert "[evaluate.sets.july2]" in config and "[evaluate.sets.later]" in config
    assert f'commit = "{main}"' in config

    listed, run = _together(
        mlprod, root,
        ("eval", "sets"),
        ("eval", "run", evaluated.refs["small"], "--set", "july2", "--no-cost", "--format", "json"),
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    later, july2 = _row(listed.stdout, "later"), _row(listed.stdout, "july2")
    assert later == ["later", f"{pinned}, ts in ['2026-02-02', '2026-03-02')", "week", "c", "group", ""]
    assert july2 == ["july2", f"{pinned}, ts in ['2026-02-02', None)", "week", "c", "group", ""]

    # The new set evaluates; with --no-cost nothing of serving is measured or reported.
    report = _json(run)
    assert report["evaluation_set"]["name"] == "july2" and report["evaluation_set"]["end"] is None
    assert report["serving"] is None and "latency_p99_ms" not in report["metrics"]
    assert report["rows"] == LATER_ROWS  # the table ends with `later`'s last week
    assert report["slices"]["by_column"]["c"] and report["fairness"][0]["column"] == "group"


def test_profiles_shows_the_builtins_with_their_constraints(mlprod: Run, evaluated: Evaluated) -> None:
    shown = mlprod("eval", "profiles", cwd=evaluated.root)
    assert shown.returncode == 0, shown.stderr
    accuracy, edge, regulated = (_row(shown.stdout, n) for n in ("accuracy-first", "edge", "regulated"))
    assert accuracy[1] == "auc" and accuracy[2].startswith("auc 10 (higher), log_loss 2 (lower)")
    assert accuracy[3] == "latency_p99_ms <= 50"
    assert edge[3] == "latency_p99_ms <= 10; artifact_mb <= 5"
    assert regulated[3] == "dp_difference <= 0.1; interpretability >= 0.5"


def test_run_stores_a_report_that_show_reads_back(mlprod: Run, evaluated: Evaluated) -> None:
    root, ref = evaluated.root, evaluated.refs["small"]
    report = _json(mlprod("eval", "run", ref, "--set", "later", "--format", "json", cwd=root))
    assert f"{report['model']}/{report['version']}" == ref and report["evaluation_set"]["name"] == "later"
    assert report["dataset_commit"] == evaluated.reports["small"].dataset_commit
    assert report["rows"] == LATER_ROWS and report["seed"] == 0  # [evaluate] seed
    auc = report["quality"]["auc"]
    assert 0.6 < auc < 0.95 and report["metrics"]["auc"] == auc
    assert auc == pytest.approx(evaluated.reports["small"].quality["auc"])  # no randomness in AUC
    slices = report["slices"]
    assert [s["value"] for s in slices["by_time"]] == ["2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23"]
    assert [s["value"] for s in slices["by_column"]["c"]] == ["a", "b", "c"]
    assert report["metrics"]["worst_slice_auc"] == slices["worst"]["metric"]
    shifts = {s["name"] for s in report["robustness"]["shifts"]}
    assert {"later_window", "missing_10pct", "noise_0.5sd", "reweight:c", "reweight:group"} <= shifts
    assert [f["column"] for f in report["fairness"]] == ["group"]
    assert [g["group"] for g in report["fairness"][0]["groups"]] == ["g1", "g2"]
    serving = report["serving"]
    assert serving is not None and 0 < serving["latency_p50_ms"] <= serving["latency_p99_ms"]
    assert report["metrics"]["latency_p99_ms"] == serving["latency_p99_ms"] and serving["memory_mb"] > 0
    useful = {f["feature"]: f["useful"] for f in report["importance"]["features"]}
    assert set(useful) == {"x", "noise", "c", "group"} and useful["x"] and not useful["noise"]

    by_id, table = _together(
        mlprod,
        root,
        ("eval", "show", report["id"][:10], "--format", "json"),
        ("eval", "show", ref, "--set", "later"),
    )
    again = _json(by_id)
    assert again["id"] == report["id"] and again["metrics"] == report["metrics"]
    assert again["serving"] == serving and again["quality"] == report["quality"]

    assert table.returncode == 0, table.stderr
    title = table.stdout.splitlines()[0]
    assert title.startswith(f"{ref} on later (commit {report['dataset_commit'][:12]}, 4,046 rows, seed 0)")
    assert title.endswith(f"report {report['id'][:12]}")
    assert _row(table.stdout, "auc") == ["auc", f"{auc:.4g}"]
    assert _row(table.stdout, "latency_p99_ms")[1] == f"{serving['latency_p99_ms']:.4g}"
    assert "worst slice: week of=" in table.stdout and "fairness by group: DP difference" in table.stdout
    assert table.stdout.splitlines()[-1].startswith(
        "features indistinguishable from zero (drop candidates): "
    )
    assert "noise" in table.stdout.splitlines()[-1]


def test_leaderboard_formats_and_recorded_boards(mlprod: Run, evaluated: Evaluated) -> None:
    root = evaluated.root
    refs = {evaluated.refs["linear"], evaluated.refs["small"]}
    edge = ("eval", "leaderboard", "--set", "later", "--profile", "edge")
    table, as_json, as_csv = _together(mlprod, root, edge, (*edge, "--format", "json"), (*edge, "-f", "csv"))

    assert table.returncode == 0, table.stderr
    title, header = table.stdout.splitlines()[0], table.stdout.splitlines()[2]
    assert title.startswith("leaderboard ") and title.endswith(" · profile edge · set later")
    assert [cell.strip() for cell in header.split("┃")[1:4]] == ["rank", "model", "utility"]
    assert evaluated.refs["large"] not in table.stdout  # never evaluated on `later`

    board = _json(as_json)
    assert board["profile"] == "edge" and board["evaluation_set"] == "later" and board["units_of"] is None
    entries = board["entries"]
    assert {e["ref"] for e in entries} == refs
    ranked = [e for e in entries if e["rank"] is not None]
    # linear's p99 latency is close to edge's 10 ms limit: it may break the constraint and go unranked
    assert ranked and [e["rank"] for e in ranked] == list(range(1, len(ranked) + 1))
    assert [e["utility"] for e in ranked] == sorted((e["utility"] for e in ranked), reverse=True)
    for entry in entries:
        assert (entry["rank"] is None) == bool(entry["failures"]), entry
        assert entry["missing"] == [] and entry["metrics"]["latency_p99_ms"] > 0
    assert set(board["amrs"]) >= {"auc", "latency_p99_ms", "artifact_mb", "memory_mb"}
    for entry in entries:  # the table ranks the same reports the same way
        assert _row(table.stdout, entry["ref"], column=1)[0] == str(entry["rank"] or "-")

    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(as_csv.stdout.splitlines()))
    assert ",".join(rows[0]).startswith("rank,model,utility,auc,latency_p99_ms,")
    assert rows[0][-3:] == ["pareto", "constraint_failures", "missing"]
    assert len(rows) == 3 and {row[1] for row in rows[1:]} == refs

    shown, in_units = _together(
        mlprod, root, ("eval", "leaderboard", "--show", board["id"][:12], "--format", "json"),
        (*edge, "--units-of", board["id"], "--format", "json"),
    )  # fmt: skip
    recorded = _json(shown)
    assert recorded["id"] == board["id"] and recorded["entries"] == entries
    assert recorded["amrs"] == board["amrs"] and recorded["profile"] == "edge"
    for key in ("primary", "weights", "constraints"):
        assert recorded["profile_definition"][key] == board["profile_definition"][key]
    rescored = _json(in_units)
    assert rescored["id"] != board["id"] and rescored["units_of"] == board["id"]
    assert rescored["amrs"] == board["amrs"]
    assert {e["ref"]: e["utility"] for e in rescored["entries"]} == {e["ref"]: e["utility"] for e in entries}


def test_gate_passes_the_better_model_and_fails_the_worse(mlprod: Run, evaluated: Evaluated) -> None:
    root, better, worse = evaluated.root, evaluated.refs["linear"], evaluated.refs["small"]
    linear, small = evaluated.reports["linear"], evaluated.reports["small"]
    # linear wins on what accuracy-first weighs most (auc 10, log_loss 2, ece 1 of 14) and on the
    # worst slice; small only on latency and cost (0.5 each), and linear stays under the 50 ms limit
    for metric in ("auc", "worst_slice_auc"):
        assert linear.metrics[metric] > small.metrics[metric]
    for metric in ("log_loss", "ece"):
        assert linear.metrics[metric] < small.metrics[metric]
    assert linear.metrics["latency_p99_ms"] < 50

    gate = ("--set", "later", "--profile", "accuracy-first")
    passed, failed = _together(
        mlprod, root, ("eval", "gate", worse, better, *gate), ("eval", "gate", better, worse, *gate)
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.startswith(f"PASS: {better} vs {worse}\n")
    assert "  - constraint latency_p99_ms <= 50 holds" in passed.stdout
    assert "\n  - worst slice " in passed.stdout

    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert failed.stdout.startswith(f"FAIL: {worse} vs {better}\n")
    assert "\n  - worst slice regresses: " in failed.stdout
    for verdict, challenger_wins in ((passed, True), (failed, False)):
        utility = re.search(
            r"^  - utility (\S+) vs champion (\S+).* under 'accuracy-first'$", verdict.stdout, re.M
        )
        assert utility is not None, verdict.stdout
        assert (float(utility[1]) > float(utility[2])) == challenger_wins


def test_eval_errors_are_one_line_and_exit_2(mlprod: Run, evaluated: Evaluated) -> None:
    cases = {
        ("eval", "run", evaluated.refs["small"], "--set", "nope"): "evaluation set 'nope' is not declared",
        ("eval", "leaderboard", "--set", "later", "--profile", "fastest"): "Unknown profile 'fastest'",
        (
            "eval",
            "leaderboard",
            "--set",
            "later",
            "--format",
            "xml",
        ): "--format 'xml': expected one of table,",
        ("eval", "leaderboard"): "name the evaluation set with --set (or show a recorded one with --show ID)",
        ("eval", "show", "nobody/1", "--set", "later"): "model 'nobody' is not registered",
        ("eval", "show", "abc"): "report id 'abc' is too short: give at least 6 characters",
        ("eval", "show", "abcdef12"): "to show a model's newest report, name its set",
        ("eval", "add-set", "july3", "--table", "events", "--time", "ts", "--period", "year"): (
            "evaluation set 'july3': period 'year' is not one of day, week, month"
        ),
        ("eval", "add-set", "july4", "--table", "nope", "--time", "ts"): "table 'nope' not found",
        ("eval", "add-set", "july5", "--table", "events", "--time", "ts", "--start", "last week"): (
            "--start 'last week' is not a date or time; use e.g. 2013-08-01, "
        ),
        ("eval", "run", evaluated.refs["small"], "--set", "later", "--format", "xml"): (
            "--format 'xml': expected one of table, json"
        ),
    }
    before = mlprod(
        "eval", "show", evaluated.refs["small"], "--set", "later", "--format", "json", cwd=evaluated.root
    )
    for done, message in zip(_together(mlprod, evaluated.root, *cases), cases.values(), strict=True):
        _fails(done, message)
    after = mlprod(
        "eval", "show", evaluated.refs["small"], "--set", "later", "--format", "json", cwd=evaluated.root
    )
    assert json.loads(after.stdout)["id"] == json.loads(before.stdout)["id"]  # a refused run stores nothing
    assert "july3" not in (evaluated.root / "mlprod.toml").read_text()
    assert "july5" not in (evaluated.root / "mlprod.toml").read_text()


def test_moving_data_keeps_results_comparable_and_the_leaderboard_says_what_it_left_out(
    mlprod: Run, evaluated: Evaluated
) -> None:
    """A set following a branch: data outside its rows changes nothing; data inside leaves the older
    reports out, each with the change and the command, and ``--reevaluate`` evaluates them."""
    root, refs = evaluated.root, evaluated.refs
    with Workspace.open(root) as ws:
        TableStore(ws).branch("events", "feed")
    declared = mlprod(
        "eval", "add-set", "feed", "--table", "events", "--time", "ts", "--ref", "feed", "--follow",
        "--start", "2026-02-02", "--end", "2026-03-02", "--slice", "c", "--fairness", "group", cwd=root,
    )  # fmt: skip
    assert declared.stdout.strip() == "evaluation set feed: events@feed, ts in ['2026-02-02', '2026-03-02')"
    quick = ("--set", "feed", "--no-cost", "-f", "json")
    linear = _json(mlprod("eval", "run", refs["linear"], *quick, cwd=root))
    _commit(root, _rows(first_id=900_000, week=9), "March arrives")  # after the set's range
    small = _json(mlprod("eval", "run", refs["small"], *quick, cwd=root))
    assert linear["dataset_commit"] != small["dataset_commit"]

    profile = ("--set", "feed", "--profile", "regulated")
    board, verdict = _together(
        mlprod, root, ("eval", "leaderboard", *profile, "-f", "json"),
        ("eval", "gate", refs["small"], refs["linear"], *profile, "--max-slice-regression", "1"),
    )  # fmt: skip
    ranked = _json(board)
    assert {e["ref"] for e in ranked["entries"]} == {refs["linear"], refs["small"]}
    command = f"mlprod eval run {refs['large']} --set feed"
    assert ranked["excluded"] == [{"ref": refs["large"], "reason": "no report on 'feed'", "command": command}]
    assert verdict.returncode in (0, 3), verdict.stdout  # pass or fail, never inconclusive (4)

    _commit(root, _rows(first_id=910_000, week=5), "late February rows")  # inside the set's range
    stale = mlprod("eval", "leaderboard", *profile, cwd=root)
    _fails(stale, "no report on 'feed' measured the rows it selects now")
    _commit(root, _rows(first_id=920_000, week=5), "more late February rows")
    head = _json(mlprod("eval", "run", refs["small"], *quick, cwd=root))["dataset_commit"]
    shown, gated = _together(
        mlprod, root, ("eval", "leaderboard", *profile),
        ("eval", "gate", refs["linear"], refs["small"], *profile),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert _row(shown.stdout, refs["small"], column=1) and refs["linear"] not in shown.stdout
    notes = shown.stderr.splitlines()
    assert f"ranked on the rows feed selects at events@{head[:12]}" in notes
    assert (
        f"left out: {refs['linear']}: evaluated on events@{linear['dataset_commit'][:12]}, "
        f"feed rows changed since (events@{head[:12]}): +40 -0 ~0"
    ) in notes
    assert f"  evaluate it: mlprod eval run {refs['linear']} --set feed" in notes
    assert notes[-1] == (
        "evaluate every model left out and rank again: "
        "mlprod eval leaderboard --set feed --profile regulated --reevaluate"
    )
    assert gated.returncode == 4, gated.stdout
    reason = " ".join(gated.stdout.split())  # the console wraps long reasons
    assert (
        f"not comparable: 'feed' selects other rows at events@{linear['dataset_commit'][:12]} than at "
        f"events@{head[:12]}: +40 -0 ~0; evaluate both on the set's current rows: "
        f"`mlprod eval run {refs['linear']} --set feed`"
    ) in reason

    again = mlprod(
        "eval", "leaderboard", *profile, "--model", refs["linear"], "--model", refs["small"], "--reevaluate",
        "-f", "json", cwd=root, timeout=300,
    )  # fmt: skip
    assert {e["ref"] for e in _json(again)["entries"]} == {refs["linear"], refs["small"]}


def _rows(*, first_id: int, week: int) -> pd.DataFrame:
    """20 new rows of ``events`` in ``week`` (counted from the first training week)."""
    rows = events(n=20, seed=first_id)
    rows["id"] += first_id
    rows["week"] = week
    rows["ts"] = [START + timedelta(days=7 * week, hours=h) for h in range(20)]
    return rows


def _commit(root: Path, rows: pd.DataFrame, message: str) -> None:
    with Workspace.open(root) as ws:
        TableStore(ws).commit("events", rows, mode="append", branch="feed", message=message)
