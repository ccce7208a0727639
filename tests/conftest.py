"""Shared fixtures: workspaces (SQLite and PostgreSQL), small training data, a registered model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlprod.meta.scratch import scratch_database
from mlprod.models import EstimatorSpec, ModelVersion, Registry, TrainedModel, train_classifier
from mlprod.workspace import Workspace

POSTGRES_ENV = "MLPROD_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's MLPROD_* variables or writes to their cache."""
    for name in list(os.environ):
        if name.startswith("MLPROD_") and name != POSTGRES_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.init(tmp_path / "ws") as ws:
        yield ws


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; skipped locally without a server, required in CI."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set; .ci/run must start PostgreSQL")
        pytest.skip(f"set {POSTGRES_ENV} to run PostgreSQL tests (.ci/run does)")
    with scratch_database(admin_url) as url:
        yield url


def make_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Synthetic binary task: the label depends on ``x`` and on the category ``c``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n)
    logit = 2.5 * x + np.where(c == "a", 2.0, np.where(c == "b", -2.0, 0.0))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"x": x, "c": c, "y": y})


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


def train_toy(frame: pd.DataFrame, *, rounds: int = 5) -> TrainedModel:
    """A small LightGBM model of ``y`` from ``x`` and the category ``c``."""
    return train_classifier(
        frame,
        label="y",
        numeric=["x"],
        categorical=["c"],
        estimator=EstimatorSpec("lightgbm", {"n_estimators": rounds}),
    )


@pytest.fixture
def registered(workspace: Workspace, frame: pd.DataFrame) -> ModelVersion:
    """Model ``toy`` version 1, with ``@champion`` pointing at it."""
    trained = train_toy(frame, rounds=20)
    registry = Registry(workspace)
    version = registry.register("toy", trained.model, signature=trained.signature, metrics={"auc": 0.9})
    registry.set_alias("toy", "champion", version.version, why="first")
    return version
