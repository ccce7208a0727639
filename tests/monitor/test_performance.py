from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from mlprod.errors import InvalidInputError
from mlprod.monitor.calibration import Calibration, density_ratio_weights
from mlprod.monitor.performance import (
    METRICS,
    PerformanceEstimator,
    ScoreSketch,
    expected_metrics,
    realized_metrics,
)


def calibrated(rng: np.random.Generator, rows: int, power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose labels are drawn from them, so they are calibrated by construction."""
    scores = rng.uniform(size=rows) ** power
    return scores, (rng.uniform(size=rows) < scores).astype(float)


@pytest.mark.parametrize("threshold", [0.5, 0.3217])
def test_realized_metrics_equal_sklearn(threshold: float) -> None:
    rng = np.random.default_rng(1)
    scores = rng.beta(2, 3, size=20_000)
    labels = (rng.uniform(size=20_000) < scores).astype(int)
    metrics = realized_metrics(ScoreSketch(threshold=threshold).update(scores, labels))
    predicted = (scores >= threshold).astype(int)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    assert metrics["precision"] == pytest.approx(precision_score(labels, predicted), abs=1e-12)
    assert metrics["recall"] == pytest.approx(recall_score(labels, predicted), abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1_score(labels, predicted), abs=1e-12)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-3)


def test_threshold_is_a_bin_edge_and_scores_on_it_are_positive() -> None:
    sketch = ScoreSketch(bins=10, threshold=0.37).update([0.37, 0.3699], [1, 0])
    assert 0.37 in sketch.edges
    assert realized_metrics(sketch)["accuracy"] == 1.0


def test_unlabelled_rows_count_in_rows_but_not_in_realized_metrics() -> None:
    sketch = ScoreSketch().update([0.9, 0.8, 0.1, 0.2], [1, np.nan, 0, np.nan])
    assert (sketch.rows, sketch.labelled_rows) == (4, 2)
    assert realized_metrics(sketch)["accuracy"] == 1.0


def test_merged_sketches_equal_one_sketch_of_all_rows() -> None:
    rng = np.random.default_rng(2)
    scores, labels = calibrated(rng, 9_000)
    labels[rng.uniform(size=9_000) < 0.3] = np.nan
    whole = ScoreSketch().update(scores, labels)
    parts = [
        ScoreSketch().update(scores[i : i + 2_000], labels[i : i + 2_000]) for i in range(0, 9_000, 2_000)
    ]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    assert merged.to_dict() == whole.to_dict()


def test_merge_refuses_other_bins() -> None:
    with pytest.raises(InvalidInputError, match="different bins or thresholds"):
        ScoreSketch(bins=100).merge(ScoreSketch(bins=200))


def test_sketch_and_calibration_round_trip_through_json() -> None:
    rng = np.random.default_rng(3)
    sketch = ScoreSketch(bins=50, threshold=0.4).update(*calibrated(rng, 1_000))
    again = ScoreSketch.from_dict(json.loads(json.dumps(sketch.to_dict())))
    assert again.to_dict() == sketch.to_dict()
    assert realized_metrics(again) == realized_metrics(sketch)
    calibration = Calibration.fit(sketch.edges, negatives=sketch.negatives, positives=sketch.positives)
    restored = Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert np.array_equal(restored.probabilities, calibration.probabilities)


def test_calibration_is_isotonic_and_recovers_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(4)
    truth = rng.uniform(size=50_000)
    labels = rng.uniform(size=50_000) < truth
    scores = truth**3  # under-confident scores of a well-ranking model
    sketch = ScoreSketch(bins=200).update(scores, labels)
    calibration = Calibration.fit(sketch.edges, negatives=sketch.negatives, positives=sketch.positives)
    assert np.all(np.diff(calibration.probabilities) >= 0)
    probe = np.array([0.001, 0.125, 0.5])  # truth 0.1, 0.5, 0.79
    assert calibration(probe) == pytest.approx(np.cbrt(probe), abs=0.05)


def test_cbpe_estimate_is_unbiased_and_its_band_covers_on_calibrated_data() -> None:
    rng = np.random.default_rng(5)
    estimator = PerformanceEstimator(simulations=200).fit(*calibrated(rng, 50_000))
    covered = dict.fromkeys(METRICS, 0)
    errors: dict[str, list[float]] = {m: [] for m in METRICS}
    windows = 40
    for i in range(windows):
        scores, labels = calibrated(rng, 1_000, power=0.5 + i / 20)  # shifted score distributions
        window = estimator.window().update(scores, labels)
        for point in estimator.evaluate(window):
            assert point.estimated is not None and point.realized is not None
            assert point.lower is not None and point.upper is not None
            assert point.lower <= point.estimated <= point.upper
            covered[point.metric] += point.lower <= point.realized <= point.upper
            errors[point.metric].append(point.estimated - point.realized)
    for metric in METRICS:
        assert covered[metric] >= 0.85 * windows, metric
        assert abs(np.mean(errors[metric])) < 0.01, metric


def test_cbpe_tracks_a_shift_in_the_score_distribution() -> None:
    rng = np.random.default_rng(6)
    estimator = PerformanceEstimator().fit(*calibrated(rng, 20_000))
    confident = estimator.evaluate(estimator.window().update(rng.beta(0.3, 0.3, size=5_000)))
    unsure = estimator.evaluate(estimator.window().update(rng.beta(20, 20, size=5_000)))
    assert confident[0].estimated is not None and unsure[0].estimated is not None
    assert confident[0].estimated > 0.85 > 0.6 > unsure[0].estimated


def test_points_carry_reference_realized_and_labelled_rows() -> None:
    rng = np.random.default_rng(7)
    scores, labels = calibrated(rng, 10_000)
    estimator = PerformanceEstimator().fit(scores, labels)
    window_labels = labels[:3_000].copy()
    window_labels[1_000:] = np.nan
    points = estimator.evaluate(estimator.window().update(scores[:3_000], window_labels))
    assert [p.metric for p in points] == list(METRICS)
    reference = realized_metrics(ScoreSketch().update(scores, labels))
    realized = realized_metrics(ScoreSketch().update(scores[:1_000], labels[:1_000]))
    for point in points:
        assert point.reference == reference[point.metric]
        assert point.realized == realized[point.metric]
        assert point.labelled_rows == 1_000


def test_window_without_rows_or_labels() -> None:
    rng = np.random.default_rng(8)
    estimator = PerformanceEstimator().fit(*calibrated(rng, 5_000))
    for point in estimator.evaluate(estimator.window()):
        assert (point.estimated, point.lower, point.upper, point.realized, point.labelled_rows) == (
            None, None, None, None, 0,
        )  # fmt: skip
    unlabelled = estimator.evaluate(estimator.window().update(rng.uniform(size=100)))
    assert all(p.realized is None and p.estimated is not None for p in unlabelled)


def test_metrics_undefined_without_both_labels_are_none() -> None:
    metrics = realized_metrics(ScoreSketch().update([0.2, 0.7], [1, 1]))
    assert metrics["roc_auc"] is None
    assert metrics["recall"] == 0.5
    edges = ScoreSketch().edges
    nothing_positive = expected_metrics(
        ScoreSketch().update([0.1, 0.2]), Calibration(edges, np.zeros(len(edges) - 1))
    )
    assert nothing_positive["precision"] is None and nothing_positive["roc_auc"] is None


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.2, 1.5], [0, 1], r"scores: expected probabilities in \[0, 1\], got 1.5"),
        ([0.2, np.nan], [0, 1], r"scores: expected probabilities in \[0, 1\], got nan"),
        ([0.2, 0.4], [0, 2], "labels: expected 0, 1 or NaN"),
        ([0.2, 0.4], [0], r"labels: expected one per score \(2\), got 1"),
    ],
)
def test_bad_input_is_named(scores: list[float], labels: list[float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ScoreSketch().update(scores, labels)
    with pytest.raises(InvalidInputError, match=message):
        PerformanceEstimator().fit(scores, labels)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(InvalidInputError, match="threshold"):
        ScoreSketch(threshold=1.0)
    with pytest.raises(InvalidInputError, match="method"):
        PerformanceEstimator(method="magic")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="features: method 'density_ratio' needs the reference"):
        PerformanceEstimator(method="density_ratio").fit([0.1, 0.9], [0, 1])
    with pytest.raises(InvalidInputError, match="weights: expected one per score"):
        ScoreSketch().update([0.1], weights=[1.0, 2.0])


def test_density_ratio_weights_favour_reference_rows_like_the_window() -> None:
    rng = np.random.default_rng(9)
    reference = rng.normal(size=(4_000, 2))
    window = rng.normal(loc=[1.0, 0.0], size=(2_000, 2))
    weights = density_ratio_weights(reference, window, categorical=[False, False])
    assert weights.mean() == pytest.approx(1.0)
    # the true ratio grows as exp(x0): rows far on the window's side weigh most
    assert weights[reference[:, 0] > 1].mean() > 3 * weights[reference[:, 0] < -1].mean()


def test_density_ratio_corrects_cbpe_under_covariate_shift() -> None:
    """Labels depend on a feature the score ignores; the window has more of the risky rows."""
    rng = np.random.default_rng(10)

    def rows(n: int, risky_share: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        scores = rng.uniform(size=n)
        risky = rng.uniform(size=n) < risky_share
        truth = np.where(risky, 0.5 + scores / 2, scores / 2)
        return (
            scores,
            (rng.uniform(size=n) < truth).astype(float),
            {"x": risky.astype(float) + rng.normal(0, 0.1, n)},
        )

    ref_scores, ref_labels, ref_features = rows(8_000, 0.5)
    win_scores, win_labels, win_features = rows(4_000, 0.9)
    estimates = {}
    for method in ("cbpe", "density_ratio"):
        estimator = PerformanceEstimator(method=method, simulations=50).fit(
            ref_scores, ref_labels, ref_features
        )
        points = estimator.evaluate(estimator.window().update(win_scores, win_labels), win_features)
        point = points[METRICS.index("precision")]  # accuracy happens to be unchanged by this shift
        assert point.estimated is not None and point.realized is not None
        estimates[method] = abs(point.estimated - point.realized)
    assert estimates["density_ratio"] < 0.03 < estimates["cbpe"]
