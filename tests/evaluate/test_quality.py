"""Quality metrics against scikit-learn and hand-computed values, and their bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from mlprod.errors import InvalidInputError
from mlprod.evaluate import classification_quality, regression_quality, score_metric
from mlprod.evaluate.quality import expected_calibration_error


def test_classification_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=5000)
    p = np.round(np.clip(0.3 * y + rng.random(5000) * 0.7, 0, 1), 2)  # rounded: many ties
    q = classification_quality(y, p)
    assert q["auc"] == pytest.approx(metrics.roc_auc_score(y, p), abs=1e-12)
    assert q["accuracy"] == pytest.approx(metrics.accuracy_score(y, p >= 0.5))
    assert q["f1"] == pytest.approx(metrics.f1_score(y, p >= 0.5))
    assert q["log_loss"] == pytest.approx(metrics.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))
    assert q["brier"] == pytest.approx(metrics.brier_score_loss(y, p))


def test_expected_calibration_error_by_hand() -> None:
    # bin [0.2, 0.3): p 0.2, 0.2 vs observed 0.5 -> gap |1 - 0.4| = 0.6 over 2 rows;
    # bin [0.9, 1.0]: p 0.9, 1.0 vs observed 1.0 -> gap |2 - 1.9| = 0.1
    y, p = [0, 1, 1, 1], [0.2, 0.2, 0.9, 1.0]
    assert expected_calibration_error(y, p) == pytest.approx((0.6 + 0.1) / 4)
    perfectly_calibrated = np.repeat([0.25, 0.75], 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(labels, perfectly_calibrated) == pytest.approx(0.0)


def test_regression_metrics_by_hand() -> None:
    q = regression_quality([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 3.0, 2.0])
    assert q["mae"] == pytest.approx(0.75)
    assert q["rmse"] == pytest.approx(np.sqrt(5 / 4))
    assert q["r2"] == pytest.approx(1 - 5 / 5)
    assert score_metric("r2", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0


def test_auc_of_one_class_is_undefined_not_an_error() -> None:
    assert np.isnan(score_metric("auc", [1, 1, 1], [0.2, 0.4, 0.9]))


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.5], "1-D of equal length"),
        ([], [], "no rows to score"),
        ([0, 2], [0.1, 0.9], "labels must be 0/1"),
        ([0, 1], [0.1, 1.5], r"probabilities must lie in \[0, 1\]"),
        ([0, 1], [0.1, float("nan")], "must not contain NaN"),
    ],
)
def test_bad_inputs_are_named(y: list, p: list, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        classification_quality(y, p)


def test_an_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInputError, match="unknown quality metric 'recall'; expected one of auc"):
        score_metric("recall", [0, 1], [0.2, 0.8])
