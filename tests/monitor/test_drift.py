import warnings

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

from mlprod.errors import InvalidInputError
from mlprod.monitor.drift import (
    CATEGORICAL_PRIMARY_METHOD,
    NUMERIC_PRIMARY_METHOD,
    DriftThresholds,
    drift_checks,
    drifted_columns,
    population_stability_index,
)
from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder
from mlprod.monitor.results import Check
from mlprod.monitor.sketches import CategoricalSketch, NumericSketch

SPEC = ProfileSpec(numeric=("steady", "shifted"), categorical=("carrier",))
CARRIERS = np.array(["AA", "DL", "UA", "B6", "WN", "EV"])
MIX = np.array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
ROWS = 100_000


def table(seed: int, *, shift: float = 0.0, mix: np.ndarray = MIX, prediction_shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "steady": rng.exponential(2.0, ROWS),
            "shifted": rng.normal(10.0 + shift * 3.0, 3.0, ROWS),
            "carrier": CARRIERS[rng.choice(CARRIERS.size, ROWS, p=mix)],
            "prediction": rng.beta(2 + prediction_shift, 5, ROWS),
            "label": rng.integers(0, 2, ROWS),
        }
    )


@pytest.fixture(scope="module")
def reference() -> Profile:
    builder = ReferenceBuilder(SPEC)
    for batch in table(seed=1).to_batches(max_chunksize=25_000):
        builder.update(batch)
    return builder.finish()


def alerts(checks: list[Check]) -> set[tuple[str, str]]:
    return {(c.column, c.method) for c in checks if c.alert}


def test_no_drift_between_two_samples_of_one_distribution(reference: Profile) -> None:
    checks = drift_checks(reference, reference.window().update(table(seed=2)))
    assert {(c.column, c.method) for c in checks} == {
        (column, method)
        for column in ("steady", "shifted", "prediction")
        for method in ("psi", "ks", "wasserstein")
    } | {("carrier", "chi2"), ("carrier", "jensen_shannon"), ("*", "drift_share")}
    assert alerts(checks) == set()
    assert drifted_columns(checks) == []
    assert all(c.kind == "drift" for c in checks)


def test_half_a_standard_deviation_shift_alerts_on_that_column_only(reference: Profile) -> None:
    checks = drift_checks(reference, reference.window().update(table(seed=3, shift=0.5)))
    assert alerts(checks) == {("shifted", "psi"), ("shifted", "ks"), ("shifted", "wasserstein")}
    wasserstein = next(c for c in checks if c.column == "shifted" and c.method == "wasserstein")
    assert wasserstein.statistic == pytest.approx(0.5, abs=0.05)  # KLL k=200 errors reach ~0.03
    assert drifted_columns(checks) == ["shifted"]


def test_changed_category_mix_alerts(reference: Profile) -> None:
    mix = np.array([0.15, 0.25, 0.2, 0.1, 0.1, 0.2])
    checks = drift_checks(reference, reference.window().update(table(seed=4, mix=mix)))
    assert alerts(checks) == {("carrier", "chi2"), ("carrier", "jensen_shannon")}
    assert drifted_columns(checks) == ["carrier"]


def test_prediction_drift_is_checked(reference: Profile) -> None:
    checks = drift_checks(reference, reference.window().update(table(seed=5, prediction_shift=1.5)))
    assert drifted_columns(checks) == ["prediction"]


@pytest.mark.parametrize(("k", "tolerance"), [(200, 0.06), (800, 0.02)])
def test_wasserstein_from_sketches_is_evidentlys_normed_distance(k: int, tolerance: float) -> None:
    data, current = table(seed=1), table(seed=6, shift=0.2)
    reference = ReferenceBuilder(SPEC, k=k).update(data).finish()
    checks = {(c.column, c.method): c for c in drift_checks(reference, reference.window().update(current))}
    ref_values, cur_values = data.column("shifted").to_numpy(), current.column("shifted").to_numpy()
    evidently = stats.wasserstein_distance(ref_values, cur_values) / np.std(ref_values)
    # the gap is the two KLL sketches' approximation error, which shrinks as k grows
    assert checks["shifted", "wasserstein"].statistic == pytest.approx(evidently, abs=tolerance)


def test_statistics_agree_with_scipy_on_the_raw_rows(reference: Profile) -> None:
    data, current = table(seed=1), table(seed=6, shift=0.2)
    window = reference.window().update(current)
    checks = {(c.column, c.method): c for c in drift_checks(reference, window)}
    ref_values, cur_values = data.column("shifted").to_numpy(), current.column("shifted").to_numpy()
    exact_ks = stats.ks_2samp(ref_values, cur_values).statistic
    ref_sketch = reference.columns["shifted"]
    assert isinstance(ref_sketch, NumericSketch)
    rank_error = ref_sketch.stats.kll.normalized_rank_error(False)
    assert checks["shifted", "ks"].statistic == pytest.approx(exact_ks, abs=2 * rank_error)
    exact_psi = population_stability_index(
        np.histogram(ref_values, bins=ref_sketch.edges)[0], np.histogram(cur_values, bins=ref_sketch.edges)[0]
    )
    # reference bin counts come from the KLL's CDF, not a second pass: off by its rank error
    assert checks["shifted", "psi"].statistic == pytest.approx(exact_psi, abs=0.02)
    ref_carrier, cur_carrier = reference.columns["carrier"], window.columns["carrier"]
    assert isinstance(ref_carrier, CategoricalSketch) and isinstance(cur_carrier, CategoricalSketch)
    expected = [data.column("carrier").to_pylist().count(c) for c in ref_carrier.vocabulary]
    observed = [current.column("carrier").to_pylist().count(c) for c in ref_carrier.vocabulary]
    chi2 = stats.chi2_contingency(np.array([expected, observed]), correction=False)
    assert checks["carrier", "chi2"].statistic == pytest.approx(chi2.pvalue)
    assert checks["carrier", "chi2"].p_value == pytest.approx(chi2.pvalue)
    assert f"chi-squared {chi2.statistic:.4g}" in checks["carrier", "chi2"].detail
    js = distance.jensenshannon(expected, observed, base=2)
    assert checks["carrier", "jensen_shannon"].statistic == pytest.approx(js)


def test_every_verdict_follows_from_statistic_and_threshold(reference: Profile) -> None:
    checks = drift_checks(reference, reference.window().update(table(seed=7, shift=0.3)))
    for check in checks:
        if check.method == "drift_share":
            crossed = check.statistic >= check.threshold
        elif check.higher_is_worse:
            crossed = check.statistic > check.threshold
        else:
            crossed = check.statistic < check.threshold
        if check.alpha is not None:  # a drift verdict: significant too
            assert check.p_value is not None
            crossed = crossed and check.p_value < check.alpha
        assert check.alert == crossed, check


def test_thresholds_are_configurable(reference: Profile) -> None:
    window = reference.window().update(table(seed=3, shift=0.5))
    lenient = DriftThresholds(psi=10.0, ks=0.9, wasserstein=0.9)
    checks = drift_checks(reference, window, lenient)
    assert alerts(checks) == set()
    assert {c.threshold for c in checks if c.column == "shifted"} == {10.0, 0.9}


def test_an_empty_window_gives_no_checks_and_no_warnings(reference: Profile) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert drift_checks(reference, reference.window()) == []
        only_missing = table(seed=8).slice(0, 10).set_column(1, "shifted", pa.nulls(10, pa.float64()))
        checks = drift_checks(reference, reference.window().update(only_missing))
    assert "shifted" not in {c.column for c in checks}
    assert "steady" in {c.column for c in checks}


def test_drifted_columns_reads_only_primary_methods() -> None:
    checks = [
        Check("a", "drift", "psi", 0.5, 0.2, True),
        Check("b", "drift", NUMERIC_PRIMARY_METHOD, 0.3, 0.1, True),
        Check("c", "drift", CATEGORICAL_PRIMARY_METHOD, 0.05, 0.1, False),
        Check("d", "drift", CATEGORICAL_PRIMARY_METHOD, 0.2, 0.1, True),
        Check("b", "drift", NUMERIC_PRIMARY_METHOD, 0.3, 0.1, True),
        Check("e", "quality", NUMERIC_PRIMARY_METHOD, 0.3, 0.1, True),
    ]
    assert drifted_columns(checks) == ["b", "d"]


def test_profiles_must_be_comparable(reference: Profile) -> None:
    other = ReferenceBuilder(SPEC, bins=5).update(table(seed=2)).finish()
    with pytest.raises(InvalidInputError, match="profiles differ in column 'steady'"):
        drift_checks(reference, other.window())


def test_psi_sees_a_flag_move_from_30_to_90_percent() -> None:
    rng = np.random.default_rng(0)
    spec = ProfileSpec(numeric=("flag",), prediction=None, label=None)
    reference = (
        ReferenceBuilder(spec).update(pa.table({"flag": (rng.random(50_000) < 0.3).astype(float)})).finish()
    )
    assert reference.columns["flag"].counts.tolist() == [
        50_000 - (c := int(reference.columns["flag"].counts[1])),
        c,
    ]
    window = reference.window().update(pa.table({"flag": (rng.random(20_000) < 0.9).astype(float)}))
    psi = next(c for c in drift_checks(reference, window) if c.method == "psi")
    assert psi.alert and psi.statistic > 1.0
