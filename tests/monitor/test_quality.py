import numpy as np
import pyarrow as pa
import pytest

from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder
from mlprod.monitor.quality import QualityThresholds, quality_checks
from mlprod.monitor.results import Check
from mlprod.monitor.sketches import NumericSketch

SPEC = ProfileSpec(numeric=("distance", "delay"), categorical=("origin",))
ORIGINS = np.array(["EWR", "JFK", "LGA"] + [f"X{i:02d}" for i in range(10)], dtype=object)
ROWS = 20_000


def table(seed: int, *, missing: float = 0.0, beyond_max: float = 0.0, unseen: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    distance = rng.uniform(100, 2000, ROWS)
    distance[rng.random(ROWS) < beyond_max] = 5000.0
    delay = rng.normal(10, 30, ROWS)
    delay[rng.random(ROWS) < 0.2] = np.nan  # delay is often missing, in the reference too
    delay[rng.random(ROWS) < missing] = np.nan
    origin = ORIGINS[rng.choice(ORIGINS.size, ROWS, p=[0.3, 0.3, 0.3] + [0.01] * 10)]
    origin[rng.random(ROWS) < unseen] = "SFO"
    return pa.table(
        {
            "distance": distance,
            "delay": delay,
            "origin": pa.array(origin, pa.string()),
            "prediction": rng.random(ROWS),
            "label": pa.nulls(ROWS, pa.int64()),
        }
    )


@pytest.fixture(scope="module")
def reference() -> Profile:
    return ReferenceBuilder(SPEC, max_categories=3).update(table(seed=1)).finish()


def by_method(checks: list[Check]) -> dict[tuple[str, str], Check]:
    return {(c.column, c.method): c for c in checks}


def test_clean_window_passes_every_check(reference: Profile) -> None:
    checks = quality_checks(reference, reference.window().update(table(seed=2)))
    assert set(by_method(checks)) == {
        ("distance", "missing_rate"),
        ("distance", "out_of_range_rate"),
        ("delay", "missing_rate"),
        ("delay", "out_of_range_rate"),
        ("origin", "missing_rate"),
        ("origin", "unseen_categories"),
        ("prediction", "missing_rate"),
        ("prediction", "out_of_range_rate"),
    }
    assert [c for c in checks if c.alert] == []
    assert all(c.kind == "quality" for c in checks)


def test_missing_rate_alerts_on_an_increase_over_the_reference(reference: Profile) -> None:
    current = table(seed=3, missing=0.1)
    checks = by_method(quality_checks(reference, reference.window().update(current)))
    check = checks["delay", "missing_rate"]
    reference_rate = reference.columns["delay"].missing / ROWS
    assert reference_rate == pytest.approx(0.2, abs=0.01)
    assert check.statistic == np.isnan(current.column("delay").to_numpy()).mean()
    assert check.threshold == pytest.approx(reference_rate + 0.05)
    assert check.alert and check.detail == f"reference rate {reference_rate:.4f}"
    assert not checks["distance", "missing_rate"].alert


def test_out_of_range_rate_alerts_on_values_beyond_the_reference(reference: Profile) -> None:
    current = table(seed=4, beyond_max=0.02)
    check = by_method(quality_checks(reference, reference.window().update(current)))[
        "distance", "out_of_range_rate"
    ]
    values = current.column("distance").to_numpy()
    distance = reference.columns["distance"]
    assert isinstance(distance, NumericSketch)
    assert check.statistic == np.mean((values < distance.stats.min) | (values > distance.stats.max))
    assert check.statistic >= np.mean(values == 5000.0)
    assert check.threshold == 0.01 and check.alert
    assert "0 below and" in check.detail and "above the reference range [100" in check.detail


def test_unseen_categories_alert_but_known_rare_ones_do_not(reference: Profile) -> None:
    current = table(seed=5, unseen=0.03)
    checks = by_method(quality_checks(reference, reference.window().update(current)))
    check = checks["origin", "unseen_categories"]
    assert check.statistic == current.column("origin").to_pylist().count("SFO") / ROWS
    assert check.alert and "outside the reference's 13 distinct values" in check.detail
    window = reference.window().update(table(seed=6))
    assert window.columns["origin"].other > 0  # the rare X.. origins are outside the vocabulary, yet known
    assert not by_method(quality_checks(reference, window))["origin", "unseen_categories"].alert


def test_thresholds_are_configurable(reference: Profile) -> None:
    window = reference.window().update(table(seed=7, missing=0.1, beyond_max=0.02, unseen=0.03))
    lenient = QualityThresholds(missing_rate_increase=0.5, out_of_range_rate=0.5, unseen_rate=0.5)
    assert [c for c in quality_checks(reference, window, lenient) if c.alert] == []
    assert len([c for c in quality_checks(reference, window) if c.alert]) == 3


def test_an_empty_window_gives_no_checks(reference: Profile) -> None:
    assert quality_checks(reference, reference.window()) == []


def test_no_unseen_check_when_the_reference_had_too_many_values() -> None:
    spec = ProfileSpec(categorical=("origin",), prediction=None, label=None)
    reference = ReferenceBuilder(spec, max_known=5).update(table(seed=1)).finish()
    checks = quality_checks(reference, reference.window().update(table(seed=2, unseen=0.5)))
    assert [c.method for c in checks] == ["missing_rate"]
