"""A training run that reads a feature set: its frame is point-in-time, its lineage names the versions."""

from __future__ import annotations

import pytest

from mlprod.data import TableStore
from mlprod.errors import ConfigError, NotFoundError
from mlprod.features.catalog import load_catalog
from mlprod.models import Registry, TrainingSpec, run_training
from mlprod.workspace import Workspace
from tests.features.workspace_fixture import prepare


def spec(**changes: object) -> TrainingSpec:
    base = {
        "model": "shop-orders",
        "dataset": "orders",
        "feature_set": "shop-context",
        "label": "bought",
        "time": "ordered_at",
        "features": {"amount": "amount", "signal": "signal", "visits_1d": "visits_1d"},
        "estimator": {"kind": "lightgbm", "params": {"n_estimators": 30}},
    }
    return TrainingSpec.parse(base | changes)


def test_a_run_trains_on_the_feature_set_and_records_its_version_and_commits(workspace: Workspace) -> None:
    prepare(workspace)
    result = run_training(workspace, spec())
    lineage = result.run.lineage
    feature_set = load_catalog(workspace).feature_set("shop-context")
    assert lineage["feature_set"] == "shop-context"
    assert lineage["feature_set_version"] == feature_set.version
    signals_commit = TableStore(workspace).resolve("signals").id
    assert lineage["feature_sources"]["signals"]["commit"] == signals_commit
    assert lineage["feature_set_hash"] == spec().feature_set_hash(feature_set.version)
    assert lineage["feature_set_hash"] != spec().feature_set_hash()
    assert result.run.metrics["validation_auc"] > 0.75  # the signal, known at order time, predicts
    without = run_training(workspace, spec(feature_set=None, features={"amount": "amount"}), register=False)
    assert without.run.metrics["validation_auc"] < 0.6  # amount alone carries nothing
    assert Registry(workspace).get("shop-orders/1").signature.input_names == ["amount", "signal", "visits_1d"]


def test_an_unknown_feature_set_or_missing_definitions_are_clear_errors(workspace: Workspace) -> None:
    prepare(workspace)
    workspace.set_config("features", "module", "")
    with pytest.raises(ConfigError, match=r"set \[features\] module in mlprod.toml"):
        run_training(workspace, spec())
    workspace.set_config("features", "module", "features.py")
    with pytest.raises(NotFoundError, match=r"no feature set .nope. in features\.py; known: shop-context"):
        run_training(workspace, spec(feature_set="nope"))
