"""Start-up to exit of every read command, against ``mlprod --version`` as the baseline.

Run: ``.venv/bin/python bench/cli.py [--runs 7] [--goal-ms 300]``.

Builds a small workspace through the Python API (a versioned table with a tag, a feature set, two
trained and registered versions with an alias, an evaluation set with both versions evaluated and a
leaderboard), then runs each read command as a user would (``python -m mlprod …`` in a new process)
``--runs`` times and prints its median wall and CPU time, each with its ratio to ``--version`` (the
interpreter and the CLI's own start-up; ``python -c pass`` is shown too), and PASS/FAIL of the wall
time against the goal. On a shared machine read the CPU ratio; the absolute goal is meant for a quiet one.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlprod.data import TableStore
from mlprod.evaluate import (
    EvaluationOptions,
    EvaluationSet,
    build_leaderboard,
    evaluate_model,
    save_evaluation_set,
)
from mlprod.models import Registry, TrainingSpec, run_training
from mlprod.workspace import Workspace

START = datetime(2026, 1, 5, tzinfo=UTC)
FEATURES = """
from mlprod.features import Entity, FeatureSet, FeatureView, TableSource

kind = Entity("kind", ["c"])
recent = FeatureView("recent", kind, TableSource("events"), {"last_x": "x"}, timestamp="ts", ttl="7d")
context = FeatureSet("context", [recent])
"""
QUICK = EvaluationOptions(seed=1, resamples=20, latency_requests=20, importance_repeats=2, min_slice_rows=20)
MODEL = "events-model"

READ_COMMANDS: list[list[str]] = [
    ["--help"],
    ["info"],
    ["data", "list"],
    ["data", "log", "events"],
    ["data", "show", "events"],
    ["data", "branch", "events"],
    ["data", "diff", "events", "train", "main", "--summary"],
    ["features", "list"],
    ["features", "show", "context"],
    ["models", "list"],
    ["models", "runs"],
    ["models", "search", "--name", "events"],
    ["models", "show", f"{MODEL}/1"],
    ["models", "history", MODEL],
    ["eval", "sets"],
    ["eval", "profiles"],
    ["eval", "show", f"{MODEL}@champion", "--set", "later"],
    ["eval", "leaderboard", "--set", "later", "--no-record"],
    ["routes", "show"],
    ["tokens", "list"],
    ["monitor", "alerts"],
    ["monitor", "predictions"],
]


def events(n: int = 1200, seed: int = 5) -> pd.DataFrame:
    """Eight weeks of rows; ``y`` depends on ``x`` and the category ``c``."""
    rng = np.random.default_rng(seed)
    week = rng.integers(0, 8, size=n)
    ts = [
        START + timedelta(days=7 * int(w), hours=int(h))
        for w, h in zip(week, rng.integers(0, 160, n), strict=True)
    ]
    x = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x + np.where(c == "a", 1.0, -0.5))))).astype(np.int64)
    return pd.DataFrame({"id": np.arange(n), "ts": ts, "week": week, "x": x, "c": c, "y": y})


def build_workspace(root: Path) -> None:
    """Table ``events`` (tag ``train``, then a second commit), feature set ``context``, two versions of
    ``events-model`` (``@champion`` on the first), both evaluated on ``later``, one leaderboard."""
    with Workspace.init(root) as ws:
        rows = events()
        tables = TableStore(ws)
        tables.create("events", key=["id"], data=rows[rows["week"] < 4])
        tables.tag("events", "train")
        tables.commit("events", rows[rows["week"] >= 4], mode="append", message="weeks 5-8")
        (root / "features.py").write_text(FEATURES, encoding="utf-8")
        ws.set_config("features", "module", "features.py")
        save_evaluation_set(
            ws,
            EvaluationSet(
                "later", table="events", time="ts", start="2026-02-02", end="2026-03-02", slices=("c",)
            ),
        )
        refs = []
        for estimator in (
            {"kind": "linear"},
            {"kind": "lightgbm", "params": {"n_estimators": 5, "num_leaves": 4}},
        ):
            spec = TrainingSpec.parse(
                {"model": MODEL, "dataset": "events", "dataset_ref": "train", "label": "y", "time": "ts",
                 "features": {"x": "x", "c": "c"}, "categorical": ["c"], "estimator": estimator}
            )  # fmt: skip
            version = run_training(ws, spec).version
            assert version is not None
            refs.append(version.ref)
        Registry(ws).set_alias(MODEL, "champion", 1, why="bench")
        for ref in refs:
            evaluate_model(ws, ref, "later", options=QUICK)
        build_leaderboard(ws, evaluation_set="later")


def timed(args: list[str], *, runs: int, env: dict[str, str], module: bool = True) -> tuple[float, float]:
    """Median wall and CPU (user + system) ms from process start to exit; fails when the command does.

    CPU time is what the command costs whatever else runs on the machine; wall time is what a
    user waits for, and what the goal is about.
    """
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *(["-m", "mlprod"] if module else []), *args],
            env=env,
            capture_output=True,
            text=True,
        )
        walls.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
        if done.returncode != 0:
            raise SystemExit(f"`{' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median)")
    parser.add_argument("--goal-ms", type=float, default=300.0, help="goal per read command, quiet machine")
    parser.add_argument("--only", nargs="*", default=None, help="only commands starting with these words")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        started = time.perf_counter()
        build_workspace(root)
        print(f"workspace built in {time.perf_counter() - started:.1f} s; {options.runs} runs per command")
        env = {**os.environ, "MLPROD_HOME": str(root), "COLUMNS": "120"}
        bare, bare_cpu = timed(["-c", "pass"], runs=options.runs, env=env, module=False)
        baseline, baseline_cpu = timed(["--version"], runs=options.runs, env=env)
        commands = [
            c
            for c in READ_COMMANDS
            if options.only is None or any(" ".join(c).startswith(o) for o in options.only)
        ]
        print(f"\n{'command':<52}{'wall ms':>8}{'ratio':>7}{'cpu ms':>8}{'ratio':>7}{'goal ms':>9}  result")
        bare_ratios = f"{bare:>8.0f}{bare / baseline:>7.2f}{bare_cpu:>8.0f}{bare_cpu / baseline_cpu:>7.2f}"
        print(f"{'python -c pass (the interpreter alone)':<52}{bare_ratios}")
        print(
            f"{'mlprod --version (baseline)':<52}{baseline:>8.0f}{1.0:>7.2f}{baseline_cpu:>8.0f}{1.0:>7.2f}"
        )
        passed = 0
        for args in commands:
            wall, cpu = timed(args, runs=options.runs, env=env)
            ok = wall <= options.goal_ms
            passed += ok
            ratios = f"{wall:>8.0f}{wall / baseline:>7.2f}{cpu:>8.0f}{cpu / baseline_cpu:>7.2f}"
            print(
                f"{'mlprod ' + ' '.join(args):<52}{ratios}{options.goal_ms:>9.0f}  {'PASS' if ok else 'FAIL'}"
            )
        print(f"\n{passed} of {len(commands)} read commands within {options.goal_ms:.0f} ms wall "
              f"(baseline --version {baseline:.0f} ms wall, {baseline_cpu:.0f} ms CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
