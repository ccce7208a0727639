"""Read commands load no heavy library: a deterministic guard for their start-up time.

Each read command runs in one child process through the real entry point, one after the other,
against a workspace with tables, feature definitions and a registered model; after each, the child
notes which heavy libraries ``sys.modules`` holds. A command that pulls one in (an eager package
``__init__``, a module-level ``import pandas`` on its path) fails here, named, whatever the
machine's speed. ``bench/cli.py`` measures the times themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

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


def test_read_commands_import_no_heavy_library(full_workspace: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(HEAVY), json.dumps(READ_COMMANDS)],
        cwd=full_workspace, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    results = [json.loads(line) for line in done.stderr.splitlines() if line.startswith('{"command"')]
    assert [r["command"] for r in results] == [" ".join(c) for c in READ_COMMANDS], done.stderr
    assert [r for r in results if r["exit"] != 0] == [], done.stderr
    # sys.modules only grows: the first command showing a library is the one that imported it
    assert results[-1]["heavy"] == [], next(r for r in results if r["heavy"])
