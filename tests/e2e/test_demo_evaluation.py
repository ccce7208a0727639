"""After the demo, one more evaluation keeps July's results comparable (issue 27, item 2).

The demo commits August to December on ``flights@main`` after evaluating its candidates on ``july``;
evaluating the schedule-only baseline then must read July where the set is pinned, rank it with the
four candidates, and let the gate decide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlprod.data import TableStore
from mlprod.workspace import Workspace
from tests.e2e.test_demo import run_demo


def mlprod(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlprod", "-C", str(workspace), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.e2e
def test_one_more_evaluation_after_the_demo_keeps_every_candidate_ranked(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    assert run_demo(workspace, timeout=900).returncode == 0
    with Workspace.open(workspace) as ws:
        tables = TableStore(ws)
        pinned = next(c.id for c in tables.log("flights") if c.message == "merge June corrections")
        assert tables.resolve("flights", "main").id != pinned  # August to December arrived since
        assert ws.config.evaluate.sets["july"].commit == pinned

    baseline = mlprod(workspace, "eval", "run", "flights-delay-schedule/1", "--set", "july", "-f", "json")
    assert baseline.returncode == 0, baseline.stderr
    assert json.loads(baseline.stdout)["dataset_commit"] == pinned

    board = mlprod(workspace, "eval", "leaderboard", "--set", "july", "-f", "json")
    assert board.returncode == 0, board.stderr
    ranked = json.loads(board.stdout)
    refs = {e["ref"] for e in ranked["entries"]}
    assert refs == {"flights-delay-schedule/1", *(f"flights-delay/{v}" for v in range(1, 5))}
    assert ranked["excluded"] == [] and ranked["rows"] == f"flights@{pinned[:12]}"

    verdict = mlprod(
        workspace, "eval", "gate", "flights-delay@champion", "flights-delay-schedule/1", "--set", "july"
    )
    assert verdict.returncode in (0, 3), verdict.stdout + verdict.stderr  # never inconclusive (4)
    assert "not comparable" not in verdict.stdout
