"""The estimated-performance band: sampling variance plus the calibration's own uncertainty."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.monitor.calibration import Calibration
from mlprod.monitor.coverage import band_coverage
from mlprod.monitor.performance import METRICS, PerformanceEstimator, ScoreSketch
from mlprod.monitor.results import PerformancePoint

BANDED = ("accuracy", "f1", "roc_auc")


def calibrated(rng: np.random.Generator, rows: int, power: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose labels are drawn from them: calibrated by construction, no concept shift."""
    scores = rng.uniform(size=rows) ** power
    return scores, (rng.uniform(size=rows) < scores).astype(float)


def widths(points: list[PerformancePoint]) -> dict[str, float]:
    out = {}
    for p in points:
        assert p.lower is not None and p.upper is not None, p.metric
        out[p.metric] = p.upper - p.lower
    return out


def test_a_calibration_fitted_on_fewer_reference_rows_widens_the_band() -> None:
    rng = np.random.default_rng(1)
    scores, labels = calibrated(rng, 50_000)
    window_scores = rng.uniform(size=5_000) ** 0.7
    bands = {}
    for rows in (400, 50_000):
        estimator = PerformanceEstimator(seed=3).fit(scores[:rows], labels[:rows])
        bands[rows] = widths(estimator.evaluate(estimator.window().update(window_scores)))
    exact = PerformanceEstimator(seed=3, calibration_draws=0).fit(scores[:400], labels[:400])
    sampling_only = widths(exact.evaluate(exact.window().update(window_scores)))
    for metric in BANDED:
        assert bands[400][metric] > 1.5 * bands[50_000][metric], metric
        assert bands[400][metric] > 1.5 * sampling_only[metric], metric


def test_bootstrap_curves_vary_more_when_fitted_on_fewer_rows() -> None:
    rng = np.random.default_rng(2)
    edges = np.linspace(0.0, 1.0, 101)
    spread = {}
    for rows in (500, 50_000):
        sketch = ScoreSketch(bins=100).update(*calibrated(rng, rows))
        calibration = Calibration.fit(edges, negatives=sketch.negatives, positives=sketch.positives)
        curves = calibration.bootstrap(50, seed=0)
        assert curves.shape == (50, 100)
        assert (np.diff(curves, axis=1) >= -1e-12).all()  # every redrawn curve is isotonic too
        spread[rows] = float(curves.std(axis=0).mean())
    assert spread[500] > 4 * spread[50_000] > 0


def test_the_band_covers_at_least_90_percent_of_200_windows_without_concept_shift() -> None:
    rng = np.random.default_rng(11)
    estimator = PerformanceEstimator(simulations=200, calibration_draws=50, seed=0).fit(
        *calibrated(rng, 5_000)
    )
    points = []
    for i in range(200):
        # covariate shift only: the score distribution moves, P(label | score) stays the reference's
        scores, labels = calibrated(rng, 300, power=0.6 + (i % 20) / 20)
        points += estimator.evaluate(estimator.window().update(scores, labels))
    coverage = band_coverage(points)
    for metric in BANDED:
        assert coverage[metric].windows == 200
        assert 0.90 <= coverage[metric].share <= 0.995, (metric, coverage[metric].share)


def test_a_window_with_more_rows_has_a_narrower_band() -> None:
    rng = np.random.default_rng(4)
    estimator = PerformanceEstimator(seed=0).fit(*calibrated(rng, 20_000))
    small = widths(estimator.evaluate(estimator.window().update(rng.uniform(size=200))))
    large = widths(estimator.evaluate(estimator.window().update(rng.uniform(size=10_000))))
    for metric in BANDED:
        assert large[metric] < small[metric] / 3, metric


def test_the_same_input_gives_the_same_band_in_every_run_and_after_storing() -> None:
    rng = np.random.default_rng(5)
    scores, labels = calibrated(rng, 3_000)
    window_scores = rng.uniform(size=700)
    runs = []
    for _ in range(2):
        estimator = PerformanceEstimator(seed=7).fit(scores, labels)
        runs.append(estimator.evaluate(estimator.window().update(window_scores)))
    stored = PerformanceEstimator.from_dict(json.loads(json.dumps(estimator.to_dict())))
    runs.append(stored.evaluate(stored.window().update(window_scores)))
    assert runs[0] == runs[1] == runs[2]
    other_seed = PerformanceEstimator(seed=8).fit(scores, labels)
    assert other_seed.evaluate(other_seed.window().update(window_scores)) != runs[0]


def test_reference_windows_that_disagree_with_the_calibration_widen_the_band() -> None:
    rng = np.random.default_rng(6)
    parts, keys = [], []
    for week in range(12):
        scores = rng.uniform(size=2_000)
        slope = rng.uniform(0.5, 1.5)  # that week's labels follow the score more or less closely
        labels = (rng.uniform(size=2_000) < np.clip(0.5 + slope * (scores - 0.5), 0, 1)).astype(float)
        parts.append((scores, labels))
        keys += [week] * 2_000
    scores = np.concatenate([s for s, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    plain = PerformanceEstimator(seed=0).fit(scores, labels)
    windowed = PerformanceEstimator(seed=0).fit(scores, labels, windows=np.array(keys))
    assert windowed.spread_["accuracy"] > 0.03
    window = plain.window().update(rng.uniform(size=2_000))
    assert widths(windowed.evaluate(window))["accuracy"] > 2 * widths(plain.evaluate(window))["accuracy"]
    stored = PerformanceEstimator.from_dict(json.loads(json.dumps(windowed.to_dict())))
    assert stored.spread_ == windowed.spread_


def test_calibrated_reference_windows_add_almost_nothing() -> None:
    rng = np.random.default_rng(8)
    scores, labels = calibrated(rng, 24_000)
    estimator = PerformanceEstimator(seed=0).fit(scores, labels, windows=np.arange(24_000) // 2_000)
    assert all(estimator.spread_[metric] < 0.01 for metric in METRICS)


def test_bad_band_parameters_are_named() -> None:
    with pytest.raises(InvalidInputError, match="simulations: expected at least 40 for a 95 % band, got 10"):
        PerformanceEstimator(simulations=10)
    with pytest.raises(
        InvalidInputError, match=r"calibration_draws: expected 0 \(sampling variance only\) or more, got -1"
    ):
        PerformanceEstimator(calibration_draws=-1)
    with pytest.raises(InvalidInputError, match=r"windows: expected one per score \(3\), got 2"):
        PerformanceEstimator().fit([0.1, 0.5, 0.9], [0, 1, 1], windows=[1, 2])
    with pytest.raises(InvalidInputError, match="draws: expected at least 1, got 0"):
        Calibration.fit(np.linspace(0, 1, 3), negatives=[1, 0], positives=[0, 1]).bootstrap(0)
