"""The PCA reconstruction detector: sees correlation breaks, stays quiet without drift, streams."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mlprod.errors import InvalidInputError
from mlprod.monitor.multivariate import PcaDetector, ReconstructionWindow
from mlprod.monitor.results import MULTIVARIATE

COLUMNS = ["x", "y", "u", "v", "w", "t"]


def sample(rng: np.random.Generator, rows: int, *, broken: bool = False) -> np.ndarray:
    """Two correlated pairs (x, y) and (u, v) and two independent columns; ``broken`` flips y ~ x."""
    x, u = rng.normal(size=rows), rng.normal(size=rows)
    y = (-x if broken else x) + 0.3 * rng.normal(size=rows)
    v = u + 0.3 * rng.normal(size=rows)
    return np.column_stack([x, y, u, v, rng.normal(size=rows), rng.normal(size=rows)])


@pytest.fixture(scope="module")
def detector() -> PcaDetector:
    return PcaDetector.fit(sample(np.random.default_rng(0), 5000), COLUMNS)


def test_correlation_break_alerts_though_marginals_are_unchanged(detector: PcaDetector) -> None:
    rng = np.random.default_rng(1)
    reference, current = sample(rng, 5000), sample(rng, 2000, broken=True)
    marginal_p = [stats.ks_2samp(reference[:, i], current[:, i]).pvalue for i in range(len(COLUMNS))]
    assert min(marginal_p) > 0.01  # invisible to a univariate test

    check = detector.check(detector.window().update(current))

    assert check.alert
    assert (check.column, check.kind, check.method) == (MULTIVARIATE, "drift", "pca_reconstruction")
    assert check.statistic - detector.mean_error > 3 * (check.threshold - detector.mean_error)
    assert check.threshold == detector.threshold(2000)
    assert check.higher_is_worse
    assert f"reference mean error {detector.mean_error:.4g}" in check.detail
    assert f"{detector.components} of 6 components" in check.detail


@pytest.mark.parametrize("rows", [100, 2000, 20_000])
def test_same_distribution_does_not_alert(rows: int) -> None:
    alerts = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        detector = PcaDetector.fit(sample(rng, 3000), COLUMNS)
        check = detector.check(detector.window().update(sample(rng, rows)))
        alerts.append(check.alert)
        assert check.statistic < check.threshold or check.alert
    assert sum(alerts) == 0


def test_small_reference_is_not_biased_towards_false_alarms() -> None:
    """Out-of-sample reference errors: in-sample ones would sit below fresh rows' errors."""
    columns = [f"c{i}" for i in range(20)]
    loadings = np.random.default_rng(99).normal(size=(3, 20))
    fresh_over_reference = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        reference = rng.normal(size=(100, 3)) @ loadings + rng.normal(size=(100, 20))
        detector = PcaDetector.fit(reference, columns)
        fresh = rng.normal(size=(5000, 3)) @ loadings + rng.normal(size=(5000, 20))
        fresh_over_reference.append(detector.errors(fresh).mean() / detector.mean_error)
        in_sample = detector.errors(reference).mean()
        assert in_sample < detector.mean_error
    assert 0.97 < np.median(fresh_over_reference) < 1.03


def test_threshold_narrows_with_window_size_down_to_the_floor(detector: PcaDetector) -> None:
    bands = [detector.threshold(n) - detector.mean_error for n in (10, 1000, 10**9)]
    assert bands[0] > bands[1] > bands[2] > 0
    assert bands[2] >= detector.min_relative_shift * detector.mean_error
    assert PcaDetector.fit(sample(np.random.default_rng(0), 5000), COLUMNS, min_relative_shift=0.5).threshold(
        10**9
    ) == pytest.approx(1.5 * detector.mean_error)


def test_components_reach_the_explained_variance(detector: PcaDetector) -> None:
    assert detector.components == 2  # the two correlated pairs
    assert detector.explained_variance >= 0.65
    everything = PcaDetector.fit(sample(np.random.default_rng(0), 5000), COLUMNS, explained_variance=1.0)
    assert everything.components == len(COLUMNS) - 1  # a residual is always left to watch


def test_merge_equals_all_at_once(detector: PcaDetector) -> None:
    rows = sample(np.random.default_rng(2), 3000, broken=True)
    whole = detector.window().update(rows)
    parts = [detector.window().update(rows[a:b]) for a, b in [(0, 700), (700, 2500), (2500, 3000)]]
    merged = parts[2].merge(parts[0]).merge(parts[1])

    assert merged.rows == whole.rows == 3000
    assert merged.mean_error == pytest.approx(whole.mean_error, rel=1e-12)
    assert merged.std_error == pytest.approx(whole.std_error, rel=1e-9)
    assert merged.mean_error == pytest.approx(detector.errors(rows).mean(), rel=1e-12)
    assert merged.std_error == pytest.approx(detector.errors(rows).std(ddof=1), rel=1e-9)
    assert detector.check(merged).alert == detector.check(whole).alert


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_batch_by_batch_equals_all_at_once(cuts: list[int]) -> None:
    detector = PcaDetector.fit(sample(np.random.default_rng(3), 600), COLUMNS)
    rows = sample(np.random.default_rng(4), 400)
    bounds = [0, *sorted(cuts), 400]
    streamed = detector.window()
    for a, b in itertools.pairwise(bounds):
        streamed.update(rows[a:b])
    whole = detector.window().update(rows)
    assert streamed.rows == whole.rows
    assert streamed.mean_error == pytest.approx(whole.mean_error, rel=1e-12)
    assert detector.check(streamed).statistic == pytest.approx(detector.check(whole).statistic, rel=1e-12)


def test_serialization_round_trip(detector: PcaDetector) -> None:
    restored = PcaDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    rows = sample(np.random.default_rng(5), 500, broken=True)

    assert restored.fingerprint == detector.fingerprint
    assert restored.columns == detector.columns
    np.testing.assert_array_equal(restored.errors(rows), detector.errors(rows))
    assert restored.threshold(500) == detector.threshold(500)

    window = detector.window().update(rows[:200])
    again = ReconstructionWindow.from_dict(json.loads(json.dumps(window.to_dict())), restored)
    again.update(rows[200:])
    # the same chunks on both sides: one update of all rows sums in another order (last-digit differences)
    assert restored.check(again) == detector.check(detector.window().update(rows[:200]).update(rows[200:]))


def test_windows_of_different_detectors_do_not_mix(detector: PcaDetector) -> None:
    other = PcaDetector.fit(sample(np.random.default_rng(6), 5000), COLUMNS)
    window = other.window().update(sample(np.random.default_rng(7), 50))
    with pytest.raises(InvalidInputError, match=f"belongs to PCA detector {other.fingerprint}"):
        detector.window().merge(window)
    with pytest.raises(InvalidInputError, match="belongs to PCA detector"):
        detector.check(window)
    with pytest.raises(InvalidInputError, match="belongs to PCA detector"):
        ReconstructionWindow.from_dict(window.to_dict(), detector)


def test_empty_window_does_not_alert(detector: PcaDetector) -> None:
    window = detector.window().update(np.empty((0, len(COLUMNS))))
    check = detector.check(window)
    assert (check.alert, check.statistic, check.detail) == (False, 0.0, "no rows")
    assert np.isfinite(check.threshold)
    assert (window.mean_error, window.std_error) == (0.0, 0.0)


def test_missing_values_become_the_reference_mean(detector: PcaDetector) -> None:
    rows = sample(np.random.default_rng(8), 100)
    holes = rows.copy()
    holes[::3, 1] = np.nan
    holes[1::7, 4] = np.inf
    imputed = rows.copy()
    imputed[::3, 1] = detector.to_dict()["mean"][1]
    imputed[1::7, 4] = detector.to_dict()["mean"][4]

    np.testing.assert_allclose(detector.errors(holes), detector.errors(imputed), rtol=1e-9)
    assert detector.errors(np.full((1, len(COLUMNS)), np.nan))[0] == 0.0


def test_constant_and_empty_columns_are_ignored() -> None:
    rng = np.random.default_rng(9)
    base = sample(rng, 2000)
    reference = np.column_stack([base, np.full(2000, 0.1), np.full(2000, np.nan)])
    detector = PcaDetector.fit(reference, [*COLUMNS, "constant", "empty"])
    assert detector.ignored == ("constant", "empty")

    current = sample(rng, 1000, broken=True)
    with_noise = np.column_stack([current, rng.normal(size=1000), rng.normal(size=1000)])
    np.testing.assert_allclose(
        detector.errors(with_noise), detector.errors(np.column_stack([current, current[:, :2]]))
    )
    check = detector.check(detector.window().update(with_noise))
    assert check.alert
    assert check.detail.endswith("; ignored (constant or empty in the reference): constant, empty")


def test_collinear_reference_does_not_alert_on_rounding() -> None:
    rng = np.random.default_rng(10)
    x = 1e4 + rng.normal(size=1000)
    detector = PcaDetector.fit(np.column_stack([x, 2 * x]), ["a", "b"])
    assert detector.mean_error < 1e-9
    same = 1e4 + rng.normal(size=500)
    assert not detector.check(detector.window().update(np.column_stack([same, 2 * same]))).alert
    assert detector.check(detector.window().update(np.column_stack([same, 4e4 - 2 * same]))).alert


@pytest.mark.parametrize(
    ("matrix", "columns", "message"),
    [
        (np.zeros((100, 3)), ["a", "b"], r"reference sample has 3 columns, expected 2 \(a, b\)"),
        (np.zeros(100), ["a"], "reference sample must be 2-D"),
        (np.array([["a", "b"]] * 50), ["a", "b"], "reference sample must be numeric"),
        (
            np.ones((7, 4)),
            ["a", "b", "c", "d"],
            "reference sample has 7 rows; the PCA detector needs at least 20",
        ),
        (np.ones((50, 2)), ["a", "a"], "columns must be unique; repeated: a"),
        (np.ones((50, 3)), ["a", "b", "c"], "at least 2 columns that vary .*constant or empty: a, b, c"),
    ],
)
def test_bad_reference_is_rejected(matrix: np.ndarray, columns: list[str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        PcaDetector.fit(matrix, columns)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"explained_variance": 0.0}, r"explained_variance must be in \(0, 1\], got 0.0"),
        ({"chunks": 1}, "chunks must be at least 2, got 1"),
        ({"min_relative_shift": -0.1}, "min_relative_shift must be >= 0"),
    ],
)
def test_bad_options_are_rejected(option: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        PcaDetector.fit(sample(np.random.default_rng(0), 100), COLUMNS, **option)


def test_window_with_wrong_columns_is_rejected(detector: PcaDetector) -> None:
    with pytest.raises(
        InvalidInputError, match=r"matrix has 5 columns, expected 6 \(x, y, u, v, w, \.\.\.\)"
    ):
        detector.window().update(np.zeros((10, 5)))


def test_bad_states_are_rejected(detector: PcaDetector) -> None:
    state = detector.to_dict()
    with pytest.raises(InvalidInputError, match="not a PCA detector state"):
        PcaDetector.from_dict({**state, "components": [[1.0]]})
    with pytest.raises(InvalidInputError, match="not a PCA detector state"):
        PcaDetector.from_dict({k: v for k, v in state.items() if k != "mean"})
    with pytest.raises(InvalidInputError, match="not a reconstruction window state"):
        ReconstructionWindow.from_dict({"rows": 3}, detector)
    with pytest.raises(InvalidInputError, match="rows must be at least 1"):
        detector.threshold(0)
