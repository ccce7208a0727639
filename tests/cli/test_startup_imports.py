"""Read commands load no heavy library: a deterministic guard for their start-up time.

Each read command runs in one child process through the real entry point, one after the other,
against a workspace with tables, feature definitions and a registered model; after each, the child
notes which heavy libraries ``sys.modules`` holds. A command that pulls one in (an eager package
``__init__``, a module-level ``import pandas`` on its path) fails here, named, whatever the
machine's speed. ``bench/cli.py`` measures the times themselves.

Also: ``--version`` and ``--help`` load no command module (the command tree is lazy), and the
listing commands that read SQLite through ``mlprod.meta.fast_read`` load neither SQLAlchemy nor the
pydantic config models.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlprod.models import ModelVersion
from mlprod.workspace import Workspace
from tests.features.workspace_fixture import prepare

HEAVY = (
    "pandas", "pyarrow", "numpy", "duckdb", "sklearn", "scipy", "lightgbm", "xgboost", "onnx",
    "onnxruntime", "skops", "alembic", "httpx", "fastapi", "starlette", "uvicorn", "ray",
)  # fmt: skip
READ_COMMANDS = [
    ["--version"], ["--help"], ["models", "--help"], ["info"],
    ["data", "list"], ["data", "log", "signals"], ["data", "branch", "signals"],
    ["features", "list"], ["features", "show", "shop-context"],
    ["models", "list"], ["models", "runs"], ["models", "search", "--name", "toy"],
    ["models", "show", "toy/1"],
    ["models", "history", "toy"],
    ["eval", "sets"], ["eval", "profiles"],
    ["routes", "show"], ["routes", "history", "toy"], ["tokens", "list"], ["monitor", "alerts"],
]  # fmt: skip
# The root's own options and help load no command module, no Rich, no pydantic, no SQLAlchemy.
ROOT_COMMANDS = [["--version"], ["--help"]]
ROOT_UNWANTED = ("sqlalchemy", "pydantic", "rich", "mlprod.cli.listing", "mlprod.workspace", *HEAVY)
# Listing commands on a SQLite workspace read through sqlite3 (mlprod.meta.fast_read): no SQLAlchemy,
# and no pydantic config models (mlprod.config_check vouches for the config).
FAST_COMMANDS = [
    ["models", "list"], ["models", "history", "toy"], ["data", "list"], ["data", "log", "signals"],
    ["data", "branch", "signals"], ["routes", "history", "toy"],
]  # fmt: skip
FAST_UNWANTED = ("sqlalchemy", "mlprod.config", "mlprod.meta.tables", *HEAVY)
CHILD = textwrap.dedent("""
    import json, sys
    from mlprod.cli.main import main
    heavy, commands = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for args in commands:
        sys.argv = ["mlprod", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        loaded = [name for name in heavy if name in sys.modules]
        print(json.dumps({"command": " ".join(args), "exit": code, "heavy": loaded}), file=sys.stderr)
""")


@pytest.fixture
def full_workspace(workspace: Workspace, registered: ModelVersion) -> Path:
    prepare(workspace)
    return workspace.root


def _run_in_one_child(
    cwd: Path, unwanted: tuple[str, ...], commands: list[list[str]]
) -> list[dict[str, Any]]:
    """Each command's exit code and the ``unwanted`` modules loaded after it (all in one process)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(unwanted), json.dumps(commands)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    results = [json.loads(line) for line in done.stderr.splitlines() if line.startswith('{"command"')]
    assert [r["command"] for r in results] == [" ".join(c) for c in commands], done.stderr
    assert [r for r in results if r["exit"] != 0] == [], done.stderr
    return results


def test_read_commands_import_no_heavy_library(full_workspace: Path) -> None:
    results = _run_in_one_child(full_workspace, HEAVY, READ_COMMANDS)
    # sys.modules only grows: the first command showing a library is the one that imported it
    assert results[-1]["heavy"] == [], next(r for r in results if r["heavy"])


def test_version_and_help_load_no_command_module_nor_rich(full_workspace: Path) -> None:
    results = _run_in_one_child(full_workspace, ROOT_UNWANTED, ROOT_COMMANDS)
    assert results[-1]["heavy"] == [], next(r for r in results if r["heavy"])


def test_a_group_help_loads_that_group_only(full_workspace: Path) -> None:
    others = tuple(f"mlprod.cli.{m}" for m in ("data_commands", "eval_commands", "monitor_commands"))
    results = _run_in_one_child(full_workspace, ("sqlalchemy", *others), [["models", "--help"]])
    assert results[-1]["heavy"] == []


def test_listing_commands_on_sqlite_import_no_sqlalchemy_nor_config_models(full_workspace: Path) -> None:
    results = _run_in_one_child(full_workspace, FAST_UNWANTED, FAST_COMMANDS)
    assert results[-1]["heavy"] == [], next(r for r in results if r["heavy"])
