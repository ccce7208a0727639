"""Drift verdicts that fit the window size, the window-level verdict, and reproducible statistics."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from mlprod.config import MonitorSection
from mlprod.errors import InvalidInputError
from mlprod.monitor.alerts import evaluate_rules
from mlprod.monitor.drift import (
    DriftThresholds,
    chi_squared,
    dataset_drift,
    drift_checks,
    drifted_columns,
)
from mlprod.monitor.monitoring import MonitorSettings
from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder
from mlprod.monitor.results import Check, MonitorResult, WindowResult
from mlprod.monitor.sketches import EXACT_VALUES

SPEC = ProfileSpec(numeric=("x",), categorical=("c",), prediction=None, label=None)
CATEGORIES = np.array([f"k{i}" for i in range(30)])
ZIPF = 1.0 / np.arange(1, 31) ** 1.1
ZIPF /= ZIPF.sum()


def rows(seed: int, n: int, *, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {"x": rng.normal(shift, 1.0, n), "c": CATEGORIES[rng.choice(30, n, p=ZIPF)].astype(object)}
    )


@pytest.fixture(scope="module")
def reference() -> Profile:
    return ReferenceBuilder(SPEC).update(rows(0, 100_000)).finish()


def primary(checks: list[Check], column: str) -> Check:
    return next(c for c in checks if c.column == column and c.method in ("wasserstein", "jensen_shannon"))


def test_small_windows_without_drift_rarely_alarm_where_the_fixed_threshold_always_did(
    reference: Profile,
) -> None:
    new = old = total = 0
    for seed in range(1, 151):
        checks = drift_checks(reference, reference.window().update(rows(seed, 20)))
        for column in ("x", "c"):
            check = primary(checks, column)
            new += check.alert
            old += check.statistic > check.threshold
            total += 1
    assert new / total <= 0.05
    assert old / total >= 0.9  # the old rule: every 20-row window drifts


def test_a_large_shift_on_a_small_window_is_still_caught(reference: Profile) -> None:
    checks = drift_checks(reference, reference.window().update(rows(7, 20, shift=2.0)))
    assert drifted_columns(checks) == ["x"]


def test_a_negligible_shift_on_a_large_window_is_significant_but_no_drift(reference: Profile) -> None:
    checks = drift_checks(reference, reference.window().update(rows(8, 200_000, shift=0.03)))
    x = primary(checks, "x")
    assert x.p_value is not None and x.p_value < x.alpha  # significant …
    assert x.statistic < x.threshold and not x.alert  # … yet too small to matter
    assert "no drift" in x.detail
    moved = drift_checks(reference, reference.window().update(rows(9, 200_000, shift=0.3)))
    assert primary(moved, "x").alert


def test_a_check_records_why_it_alerted(reference: Profile) -> None:
    checks = drift_checks(reference, reference.window().update(rows(10, 50, shift=2.0)))
    x, c = primary(checks, "x"), primary(checks, "c")
    assert (x.alpha, x.reference_n, x.window_n, x.threshold) == (0.01, 100_000, 50, 0.1)
    assert x.effect_size == x.statistic and x.p_value is not None and x.p_value < 0.01
    assert x.detail.startswith("KS p-value ") and "normed Wasserstein" in x.detail and ": drift;" in x.detail
    assert "window n=50" in x.detail and "from KLL sketches" in x.detail  # the reference is sketched
    assert (c.alpha, c.reference_n, c.window_n) == (0.01, 100_000, 50)
    assert c.detail.startswith("chi-squared p-value ") and "Jensen-Shannon" in c.detail


def test_exact_statistics_equal_scipy_on_small_data() -> None:
    rng = np.random.default_rng(3)
    ref_values = rng.normal(0.0, 1.0, 2000)
    ref_values[17] = 1e4  # one extreme value: the case that varied 0.010-0.083 between runs
    cur_values = rng.normal(0.1, 1.0, 300)
    spec = ProfileSpec(numeric=("x",), prediction=None, label=None)
    reference = ReferenceBuilder(spec).update(pa.table({"x": ref_values})).finish()
    checks = {
        c.method: c for c in drift_checks(reference, reference.window().update(pa.table({"x": cur_values})))
    }
    ks = stats.ks_2samp(ref_values, cur_values)
    assert checks["ks"].statistic == ks.statistic and checks["ks"].p_value == ks.pvalue
    assert checks["wasserstein"].p_value == ks.pvalue
    expected = stats.wasserstein_distance(ref_values, cur_values) / np.std(ref_values)
    assert checks["wasserstein"].statistic == pytest.approx(expected, rel=1e-12, abs=0)
    assert "exact (raw values)" in checks["ks"].detail


@pytest.mark.parametrize("window_rows", [300, 3 * EXACT_VALUES])  # exact, then sketched
def test_the_same_data_gives_the_same_statistics_in_every_run(window_rows: int) -> None:
    rng = np.random.default_rng(4)
    ref_values = rng.lognormal(0.0, 1.0, 30_000)
    ref_values[5] = 1e6
    cur_values = rng.lognormal(0.05, 1.0, window_rows)
    spec = ProfileSpec(numeric=("x",), prediction=None, label=None)

    def run() -> list[tuple[str, float, float | None]]:
        builder = ReferenceBuilder(spec)
        for part in np.array_split(ref_values, 9):
            builder.update(pa.table({"x": part}))
        reference = builder.finish()
        window = reference.window()
        for part in np.array_split(cur_values, 5):
            window.update(pa.table({"x": part}))
        return [(c.method, c.statistic, c.p_value) for c in drift_checks(reference, window)]

    first = run()
    assert all(run() == first for _ in range(29))


def test_the_window_level_verdict_is_the_share_of_drifted_columns(reference: Profile) -> None:
    window = reference.window().update(rows(11, 5000, shift=1.0))
    checks = drift_checks(reference, window)
    share = checks[-1]
    assert (share.column, share.method, share.statistic, share.threshold, share.alert) == (
        "*",
        "drift_share",
        0.5,
        0.5,
        True,
    )
    assert share.detail.startswith("1 of 2 columns drift (equal weights")
    weighted = drift_checks(reference, window, importance={"x": 1.0, "c": 3.0})[-1]
    assert (weighted.statistic, weighted.alert) == (0.25, False)
    assert "weighted by feature importance" in weighted.detail
    assert drift_checks(reference, window, DriftThresholds(drift_share=0.6))[-1].alert is False
    assert drifted_columns(checks) == ["x"]  # the window-level check names no column


def test_dataset_drift_of_no_weighted_column_is_none() -> None:
    assert dataset_drift([]) is None
    checks = [Check("a", "drift", "wasserstein", 0.3, 0.1, True)]
    assert dataset_drift(checks, importance={"b": 1.0}) is None


@pytest.mark.parametrize(
    ("importance", "message"),
    [
        ({"y": 1.0}, "feature importance names column 'y', which is not monitored; monitored columns: "),
        ({"x": -1.0}, "feature importance of 'x' must be a finite number >= 0, got -1.0"),
        ({"x": float("nan")}, "feature importance of 'x' must be a finite number >= 0"),
        ({"x": 0.0, "c": 0.0}, "must give some column a weight above 0, got all zeros"),
    ],
)
def test_bad_importance_is_refused(reference: Profile, importance: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        drift_checks(reference, reference.window().update(rows(12, 10)), importance=importance)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "drift alpha must be between 0 and 1 \\(exclusive\\), got 0.0"),
        ({"alpha": 1.5}, "drift alpha must be between 0 and 1"),
        ({"drift_share": 0.0}, "drift_share must be in \\(0, 1\\], got 0.0"),
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        DriftThresholds(**kwargs)


def test_chi_squared_pools_sparse_categories_like_a_pooled_contingency_table() -> None:
    reference = np.array([5000, 3000, 1500, 400, 60, 30, 10])
    current = np.array([10, 6, 3, 1, 0, 0, 1])
    statistic, p_value, dof = chi_squared(reference, current)
    # a category needs 5 * 10,021 / 21 = 2,386 rows in all to be expected 5 times in the window: the
    # five rarest (2,005 together) fall short, so the next rarest joins their pool
    pooled = np.array([[5000, 3000 + 1500 + 400 + 60 + 30 + 10], [10, 6 + 3 + 1 + 0 + 0 + 1]])
    scipy_result = stats.chi2_contingency(pooled, correction=False)
    assert dof == 1
    assert (statistic, p_value) == pytest.approx((scipy_result.statistic, scipy_result.pvalue))
    assert chi_squared(np.array([10, 0]), np.array([0, 0])) == (0.0, 1.0, 0)


def test_alert_messages_give_the_p_value_and_the_window_share() -> None:
    week = WindowResult(
        start=datetime(2013, 7, 8, tzinfo=UTC),
        end=datetime(2013, 7, 15, tzinfo=UTC),
        rows=5000,
        checks=[
            Check("dep_hour", "drift", "wasserstein", 0.23, 0.1, True, p_value=0.0004, alpha=0.01),
            Check("*", "drift", "drift_share", 0.5, 0.5, True),
        ],
    )
    messages = [a.message for a in evaluate_rules(MonitorResult("flights", 3, "week", [week]))]
    assert messages == [
        "drift on dep_hour (wasserstein 0.23 > 0.1, p 0.0004 < 0.01) in week 2013-07-08",
        "drift on all features (drift_share 0.5 >= 0.5) in week 2013-07-08",
    ]


def test_alpha_and_drift_share_come_from_the_config() -> None:
    settings = MonitorSettings.from_config(MonitorSection(drift_alpha=0.05, drift_share=0.3))
    assert (settings.drift.alpha, settings.drift.drift_share) == (0.05, 0.3)
