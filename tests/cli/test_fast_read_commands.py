"""Listing commands print the same through ``mlprod.meta.fast_read`` as through the full workspace,
and a database that is not the workspace's is refused on that path too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from mlprod.data import TableStore
from mlprod.models import ModelVersion, Registry
from mlprod.serve import RoutePlan, RouteStore
from mlprod.workspace import Workspace
from tests.cli.conftest import Run

COMMANDS = [
    ["models", "list"], ["models", "history", "toy"], ["data", "list"], ["data", "log", "t"],
    ["data", "log", "t", "--ref", "v1", "--format", "json"], ["data", "branch", "t", "--format", "csv"],
    ["routes", "history", "toy"], ["routes", "history", "toy", "--format", "json"],
    ["models", "history", "nope"], ["data", "log", "nope"], ["data", "branch", "nope"],
]  # fmt: skip


@pytest.fixture
def filled(workspace: Workspace, registered: ModelVersion) -> Path:
    Registry(workspace).set_alias("toy", "staging", registered.version, why="try")
    routes = RouteStore(workspace)
    routes.set(RoutePlan.from_dict("toy", {"champion": "/1"}), why="pin")
    routes.clear("toy", why="back")
    tables = TableStore(workspace)
    tables.create("t", key=["id"], data=pa.table({"id": [1, 2], "x": [1.0, 2.0]}), buckets=2)
    tables.tag("t", "v1")
    tables.commit("t", pa.table({"id": [3], "x": [3.0]}), mode="append", message="more")
    return workspace.root


def test_fast_and_full_paths_print_the_same(mlprod: Run, filled: Path) -> None:
    # An override of the database URL (to the same file) sends every command down the full path.
    full = {"MLPROD_DATABASE_URL": f"sqlite:///{filled / 'meta.db'}"}
    for args in COMMANDS:
        fast, slow = mlprod("-C", str(filled), *args), mlprod("-C", str(filled), *args, env=full)
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), (
            args
        )
        assert fast.returncode == (2 if "nope" in args else 0), fast.stderr
    assert "@champion → 1, @staging → 1" in mlprod("-C", str(filled), "models", "list").stdout
    assert '"champion": "/1"' in mlprod("-C", str(filled), "routes", "history", "toy").stdout


def test_another_workspaces_database_is_refused(mlprod: Run, tmp_path: Path) -> None:
    for name in ("a", "b"):
        with Workspace.init(tmp_path / name) as ws:
            TableStore(ws).create("t", key=["id"], data=pa.table({"id": [1]}), buckets=1)
    for path in (tmp_path / "a").glob("meta.db*"):
        if path.is_file():
            path.unlink()
    shutil.copy(tmp_path / "b" / "meta.db", tmp_path / "a" / "meta.db")
    for args in (["models", "list"], ["data", "list"], ["data", "log", "t"]):
        done = mlprod("-C", "a", *args)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "error: the metadata database" in done.stderr and "belongs to workspace" in done.stderr
