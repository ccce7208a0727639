"""Long commands report their steps: to a ``step`` callback in the packages, as a status line on a
terminal in the CLI, and not at all when stderr is piped."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from mlprod.data import TableStore
from mlprod.evaluate import (
    EvaluationOptions,
    evaluate_model,
    explain_rows,
    get_evaluation_set,
    save_evaluation_set,
)
from mlprod.models import TrainingSpec, run_training
from mlprod.workspace import Workspace
from tests.cli.conftest import Run
from tests.evaluate.evaluated_workspace import LATER, events

Trained = tuple[Path, list[str], list[tuple[int, int]]]
QUICK = EvaluationOptions(
    seed=1, resamples=20, latency_requests=10, importance_repeats=2, importance_rows=500, min_slice_rows=20,
    serving_cost=False,
)  # fmt: skip
SPEC = {
    "model": "events-model", "dataset": "events", "dataset_ref": "main", "label": "y", "time": "ts",
    "features": {"x": "x", "c": "c"}, "categorical": ["c"],
    "estimator": {"kind": "lightgbm", "params": {"n_estimators": 3, "num_leaves": 4}},
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A workspace with ``events`` and set ``later``; the steps and rounds ``run_training`` reported."""
    root = tmp_path_factory.mktemp("progress") / "ws"
    steps: list[str] = []
    rounds: list[tuple[int, int]] = []
    with Workspace.init(root) as ws:
        TableStore(ws).create("events", key=["id"], data=events(n=2000))
        save_evaluation_set(ws, LATER)
        run_training(
            ws, TrainingSpec.parse(SPEC), step=steps.append, progress=lambda *done: rounds.append(done)
        )
    return root, steps, rounds


def test_training_reports_each_step_and_round(trained: Trained) -> None:
    _, steps, rounds = trained
    assert [s.split(" ")[0] for s in steps] == ["reading", "training", "validating", "registering"]
    assert steps[0] == "reading events@main" and steps[-1] == "registering events-model"
    assert rounds == [(1, 3), (2, 3), (3, 3)]


def test_evaluation_and_explanation_report_their_steps(
    trained: Trained,
) -> None:
    root, _, _ = trained
    evaluated: list[str] = []
    explained: list[str] = []
    with Workspace.open(root) as ws:
        reading = f"reading {get_evaluation_set(ws, 'later').describe()}"  # as saved: pinned to a commit
        evaluate_model(ws, "events-model/1", "later", options=QUICK, step=evaluated.append)
        explain_rows(ws, "events-model/1", "later", rows=2, step=explained.append)
    assert evaluated[:3] == [reading, "scoring", "quality and slices"]
    assert "robustness under shifts" in evaluated
    assert explained == [reading, "scoring", "contributions"]


def test_piped_output_carries_no_progress(mlprod: Run, trained: Trained) -> None:
    root, _, _ = trained
    done = mlprod("eval", "explain", "events-model/1", "--set", "later", "--rows", "1", "-C", str(root))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "explaining" not in done.stdout and "row 1: probability" in done.stdout


def test_a_terminal_sees_the_steps(trained: Trained) -> None:
    """stderr on a pseudo-terminal: the status line names the command and its steps."""
    root, _, _ = trained
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlprod", "eval", "explain", "events-model/1", "--set", "later", "--rows", "1",
         "-C", str(root)],
        stdout=subprocess.PIPE, stderr=secondary, env=env,
    )  # fmt: skip
    os.close(secondary)
    seen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closes when the command exits
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.wait(timeout=120) == 0
    assert b"explaining events-model/1 on later" in seen
