from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlprod.errors import InvalidInputError
from mlprod.evaluate.interpretability import (
    DECLARED_SCORES,
    METHOD_CONTRIB,
    METHOD_LINEAR,
    Interpretability,
    contributions,
    interpretability_report,
    model_family,
)
from mlprod.models import EstimatorSpec, LoadedModel, Registry, train_classifier
from mlprod.workspace import Workspace

NUMERIC = ["x", "noise"]


def make_task(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """``y`` depends on ``x`` and the categories ``c`` and ``d``; ``noise`` is pure noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n)
    d = rng.choice(["u", "v"], size=n)
    logit = 2.5 * x + np.where(c == "a", 1.5, np.where(c == "b", -1.5, 0.0)) + np.where(d == "u", 1.0, -1.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame({"x": x, "noise": rng.normal(size=n), "c": c, "d": d, "y": y})
    frame.loc[::13, "x"] = np.nan
    frame.loc[::17, "c"] = None
    return frame


def plain_linear_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )


def one_hot_linear_pipeline() -> Pipeline:
    """Like the ``linear`` estimator kind, with one-hot encoding of two categorical inputs."""
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=-1)),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    inputs = ColumnTransformer([("categorical", categories, [2, 3])], remainder=numbers)
    return Pipeline([("inputs", inputs), ("model", LogisticRegression(max_iter=500))])


ESTIMATORS: dict[str, Any] = {
    "lightgbm": lambda: EstimatorSpec("lightgbm", {"n_estimators": 40, "num_leaves": 15}),
    "xgboost": lambda: EstimatorSpec("xgboost", {"n_estimators": 40, "max_depth": 4}),
    "linear-kind": lambda: EstimatorSpec("linear"),
    "plain-pipeline": plain_linear_pipeline,
    "one-hot-pipeline": one_hot_linear_pipeline,
}


@pytest.fixture(scope="module")
def task() -> pd.DataFrame:
    return make_task()


def register_and_load(workspace: Workspace, frame: pd.DataFrame, estimator: Any) -> LoadedModel:
    trained = train_classifier(frame, label="y", numeric=NUMERIC, categorical=["c", "d"], estimator=estimator)
    registry = Registry(workspace)
    return registry.load(registry.register("m", trained.model, signature=trained.signature))


def encoded(model: LoadedModel, frame: pd.DataFrame) -> np.ndarray:
    return model.signature.encoder(lenient=True).encode_frame(frame)


def raw_score(model: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    native = model.predictor.native
    if model.format == "lightgbm-text":
        return np.asarray(native.predict(matrix, raw_score=True))
    if model.format == "xgboost-ubj":
        import xgboost as xgb

        return np.asarray(native.predict(xgb.DMatrix(matrix, missing=np.nan), output_margin=True))
    return np.asarray(native.decision_function(matrix))


@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_contributions_sum_to_the_raw_score(workspace: Workspace, task: pd.DataFrame, kind: str) -> None:
    model = register_and_load(workspace, task, ESTIMATORS[kind]())
    matrix = encoded(model, task)
    parts = contributions(model, matrix)
    assert parts.shape == (len(task), len(model.signature.inputs) + 1)
    assert parts.dtype == np.float64
    # XGBoost computes margins and contributions in float32: its tolerance is relative.
    rtol = 1e-6 if kind == "xgboost" else 0.0
    np.testing.assert_allclose(parts.sum(axis=1), raw_score(model, matrix), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "family", "method"),
    [
        ("lightgbm", "lightgbm", METHOD_CONTRIB),
        ("xgboost", "xgboost", METHOD_CONTRIB),
        ("linear-kind", "linear", METHOD_LINEAR),
        ("one-hot-pipeline", "linear", METHOD_LINEAR),
    ],
)
def test_pure_noise_gets_little_importance(
    workspace: Workspace, task: pd.DataFrame, kind: str, family: str, method: str
) -> None:
    model = register_and_load(workspace, task, ESTIMATORS[kind]())
    report = interpretability_report(model, encoded(model, task))
    assert (report.family, report.method, report.declared_score) == (family, method, DECLARED_SCORES[family])
    importance = report.importance
    assert set(importance) == {"x", "noise", "c", "d"}
    assert sum(importance.values()) == pytest.approx(1.0)
    assert list(importance.values()) == sorted(importance.values(), reverse=True)
    assert next(iter(importance)) == "x"
    assert importance["noise"] < 0.1
    assert importance["x"] > 5 * importance["noise"]


def test_linear_contributions_of_an_input_come_only_from_that_input(
    workspace: Workspace, task: pd.DataFrame
) -> None:
    """Shuffling one input (which keeps its column means) changes no other input's contribution,
    so every one-hot column was summed back onto the input it encodes."""
    model = register_and_load(workspace, task, one_hot_linear_pipeline())
    matrix = encoded(model, task)
    before = contributions(model, matrix)
    c = model.signature.input_names.index("c")
    order = np.random.default_rng(5).permutation(len(matrix))
    shuffled = matrix.copy()
    shuffled[:, c] = matrix[order, c]
    after = contributions(model, shuffled)
    others = [j for j in range(before.shape[1]) if j != c]
    np.testing.assert_allclose(after[:, others], before[:, others], atol=1e-12)
    np.testing.assert_allclose(after[:, c], before[order, c], atol=1e-12)
    assert np.ptp(before[:, c]) > 0.5


def test_linear_contributions_are_relative_to_the_rows_passed(
    workspace: Workspace, task: pd.DataFrame
) -> None:
    model = register_and_load(workspace, task, plain_linear_pipeline())
    parts = contributions(model, encoded(model, task))
    np.testing.assert_allclose(parts[:, :-1].mean(axis=0), 0.0, atol=1e-9)
    assert np.ptp(parts[:, -1]) == 0.0


@pytest.mark.parametrize(
    ("estimator", "family"),
    [
        (DecisionTreeClassifier(max_depth=5, random_state=0), "decision_tree"),
        (HistGradientBoostingClassifier(max_iter=20, random_state=0), "hist_gradient_boosting"),
    ],
)
def test_trees_without_contributions_fall_back_to_split_gain(
    workspace: Workspace, task: pd.DataFrame, estimator: Any, family: str
) -> None:
    model = register_and_load(workspace, task, estimator)
    matrix = encoded(model, task)
    assert model_family(model) == family
    with pytest.raises(InvalidInputError, match=r"available for tree boosters .* and linear models"):
        contributions(model, matrix)
    report = interpretability_report(model, matrix)
    assert (report.family, report.method, report.declared_score) == (
        family,
        "split gain",
        DECLARED_SCORES[family],
    )
    assert next(iter(report.importance)) == "x"
    assert report.importance["noise"] < 0.1
    assert sum(report.importance.values()) == pytest.approx(1.0)


def test_other_families_get_the_declared_score_and_no_importance(
    workspace: Workspace, task: pd.DataFrame
) -> None:
    model = register_and_load(workspace, task, Pipeline([("impute", SimpleImputer()), ("nb", GaussianNB())]))
    report = interpretability_report(model, encoded(model, task))
    assert report == Interpretability(family="other", declared_score=0.2, importance={}, method="unavailable")


def test_a_linear_pipeline_that_mixes_inputs_has_no_contributions(
    workspace: Workspace, task: pd.DataFrame
) -> None:
    mixing = Pipeline([("impute", SimpleImputer()), ("pca", PCA(2)), ("model", LogisticRegression())])
    model = register_and_load(workspace, task, mixing)
    matrix = encoded(model, task)
    with pytest.raises(InvalidInputError, match="cannot map the outputs of PCA back to the inputs"):
        contributions(model, matrix)
    report = interpretability_report(model, matrix)
    assert (report.family, report.importance, report.method) == ("linear", {}, "unavailable")


def test_declared_scores_are_overridable_and_checked(workspace: Workspace, task: pd.DataFrame) -> None:
    model = register_and_load(workspace, task, ESTIMATORS["lightgbm"]())
    matrix = encoded(model, task)
    assert interpretability_report(model, matrix, declared={"lightgbm": 0.55}).declared_score == 0.55
    with pytest.raises(InvalidInputError, match=r"'lightgbm' must be in \[0, 1\], got 1.5"):
        interpretability_report(model, matrix, declared={"lightgbm": 1.5})


def test_reports_sample_rows_reproducibly_and_round_trip(workspace: Workspace, task: pd.DataFrame) -> None:
    model = register_and_load(workspace, task, ESTIMATORS["lightgbm"]())
    matrix = encoded(model, task)
    first = interpretability_report(model, matrix, max_rows=500, seed=3)
    assert first == interpretability_report(model, matrix, max_rows=500, seed=3)
    assert first != interpretability_report(model, matrix, max_rows=500, seed=4)
    assert Interpretability.from_dict(first.to_dict()) == first


def test_bad_matrices_are_refused(workspace: Workspace, task: pd.DataFrame) -> None:
    model = register_and_load(workspace, task, ESTIMATORS["lightgbm"]())
    with pytest.raises(InvalidInputError, match=r"shape \(n, 4\).*got shape \(3, 2\)"):
        contributions(model, np.zeros((3, 2)))
    with pytest.raises(InvalidInputError, match="no rows"):
        interpretability_report(model, np.zeros((0, 4)))
    with pytest.raises(InvalidInputError, match="max_rows must be at least 1"):
        interpretability_report(model, np.zeros((3, 4)), max_rows=0)
