"""Robustness report: real LightGBM models scored under missing values, noise, drift and a new mix."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.evaluate.robustness import (
    RobustnessReport,
    ShiftResult,
    category_groups,
    reweight_rows,
    robustness_report,
)
from tests.evaluate.boosters import Predict, fit_booster

NAMES = ["x0", "x1", "c"]
START = np.datetime64("2023-01-01T00:00", "m")


def make_data(n: int, seed: int, *, strength: np.ndarray | float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """x0 drives the label with ``strength`` (per row or fixed), x1 weakly; c is a skewed category."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    c = rng.choice(4, size=n, p=[0.7, 0.2, 0.08, 0.02]).astype(np.float64)
    logit = strength * x[:, 0] + 0.5 * x[:, 1] + np.array([0.0, 1.0, -1.0, 2.0])[c.astype(int)]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return np.column_stack([x, c]), y


def year_of_times(n: int) -> np.ndarray:
    """``n`` timestamps spread over 2023, in random row order."""
    minutes = np.random.default_rng(99).permutation(np.linspace(0, 365 * 24 * 60 - 1, n).astype(np.int64))
    return START + minutes.astype("timedelta64[m]")


@pytest.fixture(scope="module")
def model() -> Predict:
    matrix, y = make_data(4000, seed=1)
    return fit_booster(matrix, y, categorical=2)


@pytest.fixture(scope="module")
def holdout() -> tuple[np.ndarray, np.ndarray]:
    return make_data(4000, seed=2)


def test_missing_values_and_noise_cost_a_model_that_relies_on_x0(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    matrix, y = holdout
    report = robustness_report(model, matrix, y, names=NAMES, categorical=[2], missing_fraction=0.3)
    assert [s.name for s in report.shifts] == ["missing_30pct", "noise_0.5sd", "reweight:c"]
    assert report.baseline > 0.85
    assert report.shift("missing_30pct").drop > 0.05
    assert report.shift("noise_0.5sd").drop > 0.02
    assert report.shift("missing_30pct").baseline == report.baseline
    assert report.worst_drop == max(s.drop for s in report.shifts)
    assert report.worst is not None
    strong = robustness_report(model, matrix, y, names=NAMES, categorical=[2], noise_scale=2.0)
    mild = robustness_report(model, matrix, y, names=NAMES, categorical=[2], noise_scale=0.1)
    assert strong.shift("noise_2sd").drop > 0.15
    assert strong.shift("noise_2sd").drop > mild.shift("noise_0.1sd").drop + 0.15
    assert abs(mild.shift("noise_0.1sd").drop) < 0.01
    assert "2 x each numeric input's std" in strong.shift("noise_2sd").description


def test_missing_shift_hides_the_fraction_in_every_column_independently() -> None:
    matrix, y = make_data(1000, seed=3)
    seen: list[np.ndarray] = []

    def recording(m: np.ndarray) -> np.ndarray:
        seen.append(m.copy())
        return np.asarray(1 / (1 + np.exp(-np.nan_to_num(m[:, 0]))))

    robustness_report(recording, matrix, y, names=NAMES, categorical=[2], missing_fraction=0.1)
    baseline, missing, _noise = seen
    np.testing.assert_array_equal(baseline, matrix)
    assert np.isnan(missing).sum(axis=0).tolist() == [100, 100, 100]
    masks = np.isnan(missing)
    assert not (masks[:, 0] == masks[:, 1]).all()
    kept = ~masks
    np.testing.assert_array_equal(missing[kept], matrix[kept])


def test_noise_shift_leaves_categories_and_missing_values_alone() -> None:
    matrix, y = make_data(5000, seed=4)
    matrix[:50, 0] = np.nan
    seen: list[np.ndarray] = []

    def recording(m: np.ndarray) -> np.ndarray:
        seen.append(m.copy())
        return np.asarray(1 / (1 + np.exp(-np.nan_to_num(m[:, 0]))))

    robustness_report(recording, matrix, y, names=NAMES, categorical=[2], noise_scale=0.5)
    noisy = seen[2]
    np.testing.assert_array_equal(noisy[:, 2], matrix[:, 2])
    assert np.isnan(noisy[:50, 0]).all()
    added = (noisy - matrix)[50:, :2]
    np.testing.assert_allclose(added.std(axis=0), 0.5 * np.nanstd(matrix[:, :2], axis=0), rtol=0.05)


def test_later_window_shows_drift_when_the_relationship_weakens(model: Predict) -> None:
    n = 4000
    times = year_of_times(n)
    day = (times - START).astype("timedelta64[D]").astype(np.float64)
    drifting, y_drift = make_data(n, seed=5, strength=3.0 - 2.7 * day / 365)
    stationary, y_stat = make_data(n, seed=5)

    drifted = robustness_report(model, drifting, y_drift, names=NAMES, categorical=[2], times=times)
    later = drifted.shift("later_window")
    assert later.drop > 0.1
    assert later.rows == 1000
    assert later.baseline > later.value
    assert "2023-10" in later.description
    assert "2023-01-01" in later.description
    steady = robustness_report(model, stationary, y_stat, names=NAMES, categorical=[2], times=times)
    assert abs(steady.shift("later_window").drop) < 0.03


def test_reweight_makes_every_category_equally_common() -> None:
    rng = np.random.default_rng(6)
    codes = rng.choice([0.0, 1.0, 2.0, np.nan], size=20_000, p=[0.85, 0.1, 0.04, 0.01])
    picked = reweight_rows(codes, np.random.default_rng(0))
    shares = np.bincount(category_groups(codes[picked]), minlength=4) / len(picked)
    np.testing.assert_allclose(shares, 0.25, atol=0.02)
    assert len(picked) == len(codes)


def test_reweight_shift_reports_the_category_column(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    report = robustness_report(model, *holdout, names=NAMES, categorical=[2], seed=0)
    reweighted = report.shift("reweight:c")
    assert reweighted.rows == len(holdout[1])
    assert "each of the 4 categories of c" in reweighted.description
    assert reweighted.value != report.baseline


def test_report_is_deterministic_for_a_seed(model: Predict, holdout: tuple[np.ndarray, np.ndarray]) -> None:
    first = robustness_report(model, *holdout, names=NAMES, categorical=[2], seed=7)
    again = robustness_report(model, *holdout, names=NAMES, categorical=[2], seed=7)
    other = robustness_report(model, *holdout, names=NAMES, categorical=[2], seed=8)
    assert first == again
    assert first.shift("noise_0.5sd").value != other.shift("noise_0.5sd").value


def test_undefined_metric_is_nan_noted_and_not_the_worst() -> None:
    matrix, y = make_data(400, seed=8)
    times = year_of_times(400)
    y[np.argsort(times)[-100:]] = 1.0
    score = lambda m: 1 / (1 + np.exp(-np.nan_to_num(m[:, 0])))  # noqa: E731
    report = robustness_report(score, matrix, y, names=NAMES, categorical=[2], times=times)
    later = report.shift("later_window")
    assert math.isnan(later.value)
    assert math.isnan(later.drop)
    assert "undefined" in later.description
    assert report.worst is not None
    assert report.worst.name != "later_window"
    assert RobustnessReport("auc", 0.9, (later,)).worst_drop == 0.0
    assert RobustnessReport("auc", 0.9, (later,)).worst is None


def test_drop_follows_the_metric_direction() -> None:
    assert ShiftResult("s", "d", "auc", 0.9, 0.8, 1).drop == pytest.approx(0.1)
    assert ShiftResult("s", "d", "log_loss", 0.3, 0.5, 1).drop == pytest.approx(0.2)
    assert ShiftResult("s", "d", "brier", 0.2, 0.1, 1).drop == pytest.approx(-0.1)


def test_log_loss_report_counts_a_rise_as_a_drop(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    report = robustness_report(model, *holdout, names=NAMES, categorical=[2], metric="log_loss")
    missing = report.shift("missing_10pct")
    assert missing.value > missing.baseline
    assert missing.drop > 0


def test_report_round_trips_through_json(model: Predict, holdout: tuple[np.ndarray, np.ndarray]) -> None:
    report = robustness_report(model, *holdout, names=NAMES, categorical=[2], times=year_of_times(4000))
    assert RobustnessReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    undefined = ShiftResult("s", "d", "auc", 0.9, float("nan"), 1)
    assert undefined.to_dict()["value"] is None
    assert math.isnan(ShiftResult.from_dict(undefined.to_dict()).value)
    with pytest.raises(InvalidInputError, match="expected keys metric, baseline, shifts"):
        RobustnessReport.from_dict({"metric": "auc"})


def test_missing_times_skip_the_time_shift_and_unknown_shift_names_raise(
    model: Predict, holdout: tuple[np.ndarray, np.ndarray]
) -> None:
    report = robustness_report(model, *holdout, names=NAMES, categorical=[])
    assert [s.name for s in report.shifts] == ["missing_10pct", "noise_0.5sd"]
    with pytest.raises(InvalidInputError, match="no shift named 'later_window'"):
        report.shift("later_window")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y": np.zeros(5)}, "y must be 1-D with one label per matrix row"),
        ({"matrix": np.zeros(10)}, "matrix must be 2-D"),
        ({"missing_fraction": 1.0}, r"missing_fraction must be in \[0, 1\), got 1.0"),
        ({"missing_fraction": -0.1}, r"missing_fraction must be in \[0, 1\)"),
        ({"noise_scale": -1.0}, "noise_scale must be >= 0, got -1.0"),
        ({"windows": 1}, "windows must be at least 2"),
        ({"names": ["x0", "x1"]}, "got 2 names for 3 columns"),
        ({"categorical": [3]}, r"categorical column indices must be in \[0, 3\).*got \[3\]"),
        ({"categorical": [-1]}, r"categorical column indices must be in \[0, 3\)"),
        ({"times": year_of_times(7)}, "times must be 1-D with one value per row"),
        ({"times": np.array(["soon"] * 60)}, "times must be datetime64 values"),
        ({"metric": "auroc"}, "metric must be one of auc"),
    ],
)
def test_bad_input_raises_naming_the_argument(change: dict[str, Any], message: str) -> None:
    matrix, y = make_data(60, seed=0)
    arguments: dict[str, Any] = {"matrix": matrix, "y": y, "names": NAMES, "categorical": [2], **change}
    with pytest.raises(InvalidInputError, match=message):
        robustness_report(lambda m: np.full(len(m), 0.5), **arguments)
