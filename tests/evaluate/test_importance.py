"""Permutation importance: real LightGBM models on synthetic data with known signal strengths."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.evaluate import importance
from mlprod.evaluate.importance import FeatureImportance, ImportanceReport, permutation_importance
from tests.evaluate.boosters import Predict, fit_booster

NAMES = ["x0", "x1", "x2", "c"]


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Label driven strongly by x0, weakly by x1, not at all by x2 (noise); c shifts the base rate."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    c = rng.integers(0, 4, size=n).astype(np.float64)
    logit = 3.0 * x[:, 0] + 0.6 * x[:, 1] + np.array([-1.0, 0.0, 0.5, 1.0])[c.astype(int)]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return np.column_stack([x, c]), y


@pytest.fixture(scope="module")
def model() -> Predict:
    matrix, y = make_data(4000, seed=1)
    return fit_booster(matrix, y, categorical=3)


@pytest.fixture(scope="module")
def holdout() -> tuple[np.ndarray, np.ndarray]:
    return make_data(3000, seed=2)


def test_importance_ranks_strong_over_weak_and_flags_noise(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    report = permutation_importance(model, *holdout, names=NAMES, seed=0)
    x0, x1, x2 = (report.feature(n) for n in ("x0", "x1", "x2"))
    assert report.features[0].feature == "x0"
    assert x0.importance > x1.importance > x2.importance
    assert x0.useful
    assert x0.low > 0.1
    assert x1.useful
    assert "x2" in report.drop_candidates
    assert x2.low <= 0.0 <= x2.high
    assert abs(x2.importance) < 0.01
    assert [f.importance for f in report.features] == sorted(
        (f.importance for f in report.features), reverse=True
    )
    assert report.rows == 3000
    assert report.repeats == 20
    assert report.metric == "auc"


def test_importance_is_deterministic_for_a_seed(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    first = permutation_importance(model, *holdout, names=NAMES, repeats=5, seed=3)
    again = permutation_importance(model, *holdout, names=NAMES, repeats=5, seed=3)
    other = permutation_importance(model, *holdout, names=NAMES, repeats=5, seed=4)
    assert first == again
    assert first.feature("x0").importance != other.feature("x0").importance


def test_interval_comes_from_row_resampling_and_narrows_with_more_rows(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    small = permutation_importance(model, *holdout, names=NAMES, max_rows=300, seed=0).feature("x0")
    large = permutation_importance(model, *holdout, names=NAMES, max_rows=3000, seed=0).feature("x0")
    assert small.high - small.low > 1.5 * (large.high - large.low)
    assert small.low < small.importance < small.high


def test_lower_is_better_metric_still_gives_positive_importance(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    report = permutation_importance(model, *holdout, names=NAMES, metric="log_loss", repeats=8)
    assert report.features[0].feature == "x0"
    assert report.feature("x0").importance > 0.2
    assert report.feature("x0").useful


def test_max_rows_caps_the_evaluation_sample(model: Predict, holdout: tuple[np.ndarray, np.ndarray]) -> None:
    seen: list[int] = []

    def counting(matrix: np.ndarray) -> np.ndarray:
        seen.append(len(matrix))
        return model(matrix)

    report = permutation_importance(counting, *holdout, names=NAMES, repeats=3, max_rows=500)
    assert report.rows == 500
    # the base scores, then one stacked call per shuffle with every feature's shuffled copy
    assert seen == [500] + [4 * 500] * 3


def test_repeats_share_shuffles_above_the_prediction_budget(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importance, "PREDICTION_BUDGET", 1)
    calls: list[int] = []

    def counting(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return model(matrix)

    report = permutation_importance(counting, *holdout, names=NAMES, repeats=10)
    assert calls == [3000, 4 * 3000]
    assert report.features[0].feature == "x0"
    assert "x2" in report.drop_candidates
    spread = report.feature("x0")
    assert spread.low < spread.high  # rows are still resampled on every repeat


def test_report_round_trips_through_json(model: Predict, holdout: tuple[np.ndarray, np.ndarray]) -> None:
    report = permutation_importance(model, *holdout, names=NAMES, repeats=4)
    assert ImportanceReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    nan = FeatureImportance("z", float("nan"), float("nan"), float("nan"), False)
    assert nan.to_dict()["importance"] is None
    with pytest.raises(InvalidInputError, match="expected keys metric, repeats"):
        ImportanceReport.from_dict({"metric": "auc"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y": np.zeros(5)}, "one label per matrix row"),
        ({"names": ["a"]}, "got 1 names for 4 columns"),
        ({"repeats": 1}, "repeats must be at least 2"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
        ({"max_rows": 0}, "max_rows must be at least 1"),
        ({"metric": "auroc"}, "metric must be one of auc"),
    ],
)
def test_bad_input_raises_naming_the_argument(change: dict[str, Any], message: str) -> None:
    matrix, y = make_data(50, seed=0)
    arguments: dict[str, Any] = {"names": NAMES, **change}
    labels = arguments.pop("y", y)
    with pytest.raises(InvalidInputError, match=message):
        permutation_importance(lambda m: np.full(len(m), 0.5), matrix, labels, **arguments)


def test_predict_returning_the_wrong_shape_is_reported() -> None:
    matrix, y = make_data(50, seed=0)
    with pytest.raises(InvalidInputError, match="predict must return one score per row"):
        permutation_importance(lambda m: np.zeros((len(m), 2)), matrix, y, names=NAMES)
