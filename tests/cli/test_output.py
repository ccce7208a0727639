"""Output that fits: every listing command in JSON, CSV and an 80-column piped table; help as written.

The listing commands run as a user runs them, piped (stdout is not a terminal) with COLUMNS=80.
"""

from __future__ import annotations

import csv
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pyarrow as pa
import pytest
import typer.main
from typer.testing import CliRunner

from mlprod.cli.main import app
from mlprod.data import TableStore
from mlprod.evaluate import EvaluationSet, save_evaluation_set
from mlprod.models import Registry
from mlprod.monitor import AlertStore
from mlprod.monitor.alerts import Alert
from mlprod.serve import RoutePlan, RouteStore
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace
from tests.cli.conftest import Run, mlprod_runner
from tests.conftest import make_frame, train_toy
from tests.features.workspace_fixture import prepare

LONG_MESSAGE = "a message long enough to need wrapping in a narrow terminal, with [brackets] kept"

# command -> the keys of each JSON object (the documented ones), and values that must show in full
LISTINGS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("data", "list"): ("table", "key", "rows", "head", "branches", "tags", "expectations"),
    ("data", "log", "orders"): (
        "commit", "parents", "created_at", "author", "operation", "added", "removed", "changed", "rows",
        "message",
    ),
    ("data", "branch", "orders"): ("name", "kind", "commit", "updated_at"),
    ("data", "diff", "orders", "v1"): ("change", "key", "column", "old", "new", "row"),
    ("data", "skew", "orders", "v1"): (
        "column", "kind", "psi", "ks", "null_fraction_reference", "null_fraction_current", "drifted",
    ),
    ("features", "list"): (
        "name", "kind", "version", "views", "entity", "keys", "source", "time", "ttl_or_windows", "features",
    ),
    ("models", "list"): ("model", "latest", "versions", "aliases"),
    ("models", "search"): ("version", "format", "created_at", "validation_auc", "metrics"),
    ("models", "history", "toy"): ("at", "alias", "action", "from_version", "to_version", "who", "why"),
    ("models", "runs"): (
        "run", "model", "status", "version", "estimator", "validation_auc", "duration_seconds",
        "peak_memory_mb", "started_at",
    ),
    ("eval", "sets"): (
        "set", "rows", "table", "ref", "time", "start", "end", "period", "slices", "fairness", "description",
    ),
    ("eval", "profiles"): ("profile", "primary", "weights", "directions", "constraints", "description"),
    ("routes", "show"): (
        "model", "revision", "champion", "canary", "canary_percent", "shadows", "sticky_key",
    ),
    ("routes", "history", "toy"): ("revision", "at", "who", "why", "before", "after"),
    ("tokens", "list"): ("name", "id", "scopes", "created_at", "who", "revoked_at"),
    ("monitor", "alerts"): (
        "id", "window_start", "window_end", "model", "version", "rule", "column", "method", "statistic",
        "threshold", "message", "created_at", "delivered_at",
    ),
    ("monitor", "predictions"): (
        "model", "version", "predictions", "requests", "first", "last", "mean_prediction", "latency_p50_ms",
        "latency_p99_ms",
    ),
}  # fmt: skip
EMPTY_HERE = {("models", "runs"), ("monitor", "predictions")}  # nothing trained by a run, nothing served


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with two tables and features, a model with a history, a plan, a token, an alert."""
    root = tmp_path_factory.mktemp("output") / "ws"
    with Workspace.init(root) as ws:
        prepare(ws)
        tables = TableStore(ws)
        tables.tag("orders", "v1", "main")
        first, second = tables.checkout("orders", "main").slice(0, 2).to_pylist()
        changed = [{**first, "amount": 123456.789}, {**second, "order_id": 10_000}]
        tables.commit("orders", pa.Table.from_pylist(changed), mode="upsert", message=LONG_MESSAGE)
        registry = Registry(ws)
        trained = train_toy(make_frame(), rounds=5)
        for _ in range(2):
            registry.register("toy", trained.model, signature=trained.signature, metrics={"auc": 0.91234567})
        registry.set_alias("toy", "champion", 1, why=LONG_MESSAGE)
        registry.set_alias("toy", "champion", 2, why="second")
        RouteStore(ws).set(
            RoutePlan("toy", champion="@champion", canary="/1", canary_percent=12.5), why="try"
        )
        TokenStore(ws).create("ci-deployment-pipeline", ["predict", "read"])
        save_evaluation_set(
            ws,
            EvaluationSet("later", table="orders", time="ordered_at", start="2024-01-10", slices=("shop",)),
        )
        when = datetime(2024, 1, 8, tzinfo=UTC)
        AlertStore(ws).record([
            Alert(model="toy", version=2, window_start=when, window_end=when.replace(day=15), rule="drift",
                  column="amount", method="psi", statistic=0.4567891, threshold=0.2, message=LONG_MESSAGE)
        ])  # fmt: skip
    return root


def _together(mlprod: Run, root: Path, commands: list[tuple[str, ...]]) -> list[CompletedProcess[str]]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda args: mlprod(*args, cwd=root, env={"COLUMNS": "80"}), commands))


@pytest.fixture(scope="module")
def listings(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, ...], CompletedProcess[str]]:
    """Every listing command as a table, in JSON and in CSV, piped at 80 columns (run once)."""
    run = mlprod_runner(tmp_path_factory.mktemp("listings"))
    commands = [(*c, *f) for c in LISTINGS for f in ((), ("--format", "json"), ("-f", "csv"))]
    return dict(zip(commands, _together(run, root, commands), strict=True))


def _json(done: CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_listing_gives_json_with_its_documented_keys_and_csv_with_the_same(
    listings: dict[tuple[str, ...], CompletedProcess[str]],
) -> None:
    for command, keys in LISTINGS.items():
        listed = _json(listings[(*command, "--format", "json")])
        assert isinstance(listed, list), command
        assert bool(listed) == (command not in EMPTY_HERE), (command, listed)
        for item in listed:
            assert tuple(item) == keys, command
        rows = list(csv.reader(listings[(*command, "-f", "csv")].stdout.splitlines()))
        assert tuple(rows[0]) == keys and len(rows) == len(listed) + 1, command


def test_json_holds_raw_values(listings: dict[tuple[str, ...], CompletedProcess[str]]) -> None:
    newest = _json(listings[("data", "log", "orders", "--format", "json")])[0]
    assert re.fullmatch(r"[0-9a-f]{64}", newest["commit"]) and newest["message"] == LONG_MESSAGE
    assert newest["created_at"].endswith("Z") and newest["added"] == 1 and newest["changed"] == 1
    assert datetime.fromisoformat(newest["created_at"]).utcoffset() == timedelta(0)
    alert = _json(listings[("monitor", "alerts", "--format", "json")])[0]
    assert alert["statistic"] == 0.4567891 and alert["window_start"] == "2024-01-08T00:00:00Z"
    history = _json(listings[("models", "history", "toy", "--format", "json")])
    assert sorted(m["to_version"] for m in history) == [1, 2]
    tables = _json(listings[("data", "list", "--format", "json")])
    orders = next(t for t in tables if t["table"] == "orders")
    assert orders["key"] == ["order_id"] and orders["tags"] == ["v1"] and len(orders["head"]) == 64
    diff = _json(listings[("data", "diff", "orders", "v1", "--format", "json")])
    changed = diff[0]
    assert (changed["change"], list(changed["key"]), changed["column"]) == ("changed", ["order_id"], "amount")
    assert (
        changed["new"] == "123456.789"
        and diff[1]["change"] == "added"
        and diff[1]["row"]["order_id"] == 10_000
    )


def test_tables_piped_at_80_columns_cut_no_value(
    listings: dict[tuple[str, ...], CompletedProcess[str]],
) -> None:
    for command in LISTINGS:
        table = listings[command]
        assert table.returncode == 0, (command, table.stderr)
        assert "…" not in table.stdout, (command, table.stdout)
        rules = [line for line in table.stdout.splitlines() if line[:1] and line[0] in "┏┃┡│└"]
        assert bool(rules) == (command not in EMPTY_HERE), (command, table.stdout)
        assert all(len(line) <= 80 for line in rules), (command, table.stdout)
        words = set(re.findall(r"[^\s│┃]+", table.stdout))
        for item in _json(listings[(*command, "--format", "json")]):
            for value in _atoms(item):
                whole = {value, value[:12]} & words or any(
                    w.startswith((f"{value}/", f"{value}@")) for w in words
                )
                assert whole, (command, value, table.stdout, table.stderr)
    assert "123456.789" in listings[("data", "diff", "orders", "v1")].stdout


def _atoms(item: dict[str, Any]) -> list[str]:
    """The identifiers and names of a JSON object, which every table shows whole (a 64-character id as
    its 12-character prefix, a model as ``model/version``, a table as ``table@ref``)."""
    found = []
    for key in (
        "table",
        "head",
        "commit",
        "name",
        "model",
        "id",
        "set",
        "profile",
        "version",
        "alias",
        "run",
    ):
        value = item.get(key)
        if isinstance(value, str) and " " not in value:
            found.append(value)
    return found


def test_a_long_value_wraps_between_words_and_nothing_is_cut(
    listings: dict[tuple[str, ...], CompletedProcess[str]],
) -> None:
    history = listings[("models", "history", "toy")]
    text = " ".join(history.stdout.replace("│", " ").split())
    assert "…" not in history.stdout
    for word in LONG_MESSAGE.split():
        assert word in text.split(), word
    assert "[brackets]" in history.stdout  # shown as written, not taken for markup


def test_columns_left_out_are_named_with_where_to_see_them(
    listings: dict[tuple[str, ...], CompletedProcess[str]],
) -> None:
    log = listings[("data", "log", "orders")]
    note = [line for line in log.stderr.splitlines() if line.startswith("not shown")]
    assert note == [
        "not shown, to fit 80 columns: parents, created (UTC), author, operation "
        "(--format json shows every column)"
    ]
    assert re.search(r"\b[0-9a-f]{12}\b", log.stdout) and "message" in log.stdout


@pytest.mark.parametrize("command", [("data", "list"), ("models", "history", "toy"), ("tokens", "list")])
def test_a_bad_format_is_a_one_line_error(mlprod: Run, root: Path, command: tuple[str, ...]) -> None:
    (done,) = _together(mlprod, root, [(*command, "--format", "yaml")])
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "error: --format 'yaml': expected one of table, json, csv"


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, group)]
    for name, sub in getattr(group, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


def test_every_help_renders_literally_without_bool_metavars() -> None:
    runner = CliRunner()
    walked = _commands(typer.main.get_command(app))
    assert len(walked) > 60
    for path, command in walked:
        done = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
        assert done.exit_code == 0, (path, done.output)
        assert "<bool>" not in done.output, (path, done.output)
        shown = " ".join(done.output.split())
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        for text in texts:
            for bracketed in re.findall(r"\[[^\]]*\]", text):
                assert " ".join(bracketed.split()) in shown, (path, bracketed)


def test_evaluate_in_brackets_survives_in_help() -> None:
    done = CliRunner().invoke(app, ["eval", "run", "--help"], env={"COLUMNS": "80"})
    assert "[evaluate.sets.NAME]" in done.output and "Seed (default: [evaluate] seed)." in done.output


def test_planned_groups_say_so_in_the_command_list() -> None:
    done = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert re.search(r"^  loop +The retraining loop", done.output, re.MULTILINE)
    loop = CliRunner().invoke(app, ["loop", "--help"], env={"COLUMNS": "100"})
    assert re.search(r"^  run +\(not available yet\) Run the loop", loop.output, re.MULTILINE)
    assert re.search(r"^  ui +\(not available yet\) Web dashboard\.$", done.output, re.MULTILINE)
