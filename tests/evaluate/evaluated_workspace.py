"""A small workspace with a versioned table, three trained candidates and a later evaluation set.

The table ``events`` holds eight weeks of rows. The candidates train on the first four (tag
``train``); the evaluation set ``later`` is weeks five to eight, when the signal of ``x`` weakens.
``group`` g2 has a higher base rate than g1, so a good model selects g2 more often.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlprod.data import TableStore
from mlprod.evaluate import (
    EvaluationOptions,
    EvaluationReport,
    EvaluationSet,
    evaluate_model,
    save_evaluation_set,
)
from mlprod.models import TrainingSpec, run_training
from mlprod.workspace import Workspace

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
LATER = EvaluationSet(
    "later",
    table="events",
    time="ts",
    start="2026-02-02",
    end="2026-03-02",
    slices=("c",),
    fairness=("group",),
)
CANDIDATES = {
    "linear": {"kind": "linear"},
    "small": {"kind": "lightgbm", "params": {"n_estimators": 5, "num_leaves": 4}},
    "large": {"kind": "lightgbm", "params": {"n_estimators": 300, "num_leaves": 63, "min_child_samples": 5}},
}
QUICK = EvaluationOptions(
    seed=3, resamples=50, latency_requests=100, importance_repeats=8, importance_rows=3000, min_slice_rows=50
)


def events(n: int = 8000, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    week = rng.integers(0, 8, size=n)
    hours = rng.integers(0, 160, size=n)
    ts = [START + timedelta(days=int(w) * 7, hours=int(h)) for w, h in zip(week, hours, strict=True)]
    x = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    group = rng.choice(["g1", "g2"], size=n)
    strength = np.where(week < 4, 2.0, 2.0 - 0.3 * (week - 3))  # the signal fades after training
    logit = strength * x + np.where(c == "a", 1.0, -0.5) + np.where(group == "g2", 0.8, -0.8)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(
        {"id": np.arange(n), "ts": ts, "week": week, "x": x, "noise": rng.normal(size=n), "c": c,
         "group": group, "y": y}
    )  # fmt: skip


def prepare(workspace: Workspace) -> dict[str, str]:
    """Commit the data, train the candidates, declare ``later``; return label -> model reference."""
    rows = events()
    tables = TableStore(workspace)
    tables.create("events", key=["id"], data=rows[rows["week"] < 4])
    tables.tag("events", "train")
    tables.commit("events", rows[rows["week"] >= 4], mode="append", message="weeks 5-8")
    save_evaluation_set(workspace, LATER)
    refs = {}
    for label, estimator in CANDIDATES.items():
        spec = TrainingSpec.parse(
            {
                "model": "events-model",
                "dataset": "events",
                "dataset_ref": "train",
                "label": "y",
                "time": "ts",
                "features": {"x": "x", "noise": "noise", "c": "c", "group": '"group"'},
                "categorical": ["c", "group"],
                "estimator": estimator,
                "tags": {"candidate": label},
            }
        )
        version = run_training(workspace, spec).version
        assert version is not None
        refs[label] = version.ref
    return refs


@contextmanager
def evaluated_workspace(root: Path) -> Iterator[tuple[Workspace, dict[str, EvaluationReport]]]:
    """A prepared workspace under ``root`` and each candidate's report on ``later``."""
    with Workspace.init(root / "ws") as ws:
        refs = prepare(ws)
        yield ws, {label: evaluate_model(ws, ref, "later", options=QUICK) for label, ref in refs.items()}
