"""Group fairness report: exact point estimates, interval coverage, exclusions, bad input."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlprod.errors import InvalidInputError
from mlprod.evaluate.bootstrap import iter_bootstrap_counts, percentile_interval
from mlprod.evaluate.fairness import FairnessReport, GroupRates, fairness_report

# A population with a known gap: P(y=1), TPR and FPR per group; selection = base*TPR + (1-base)*FPR
# gives A 0.25*0.8 + 0.75*(0.4/3) = 0.30 and B 0.5*0.7 + 0.5*0.2 = 0.45, so the true DP difference
# is 0.15 and the true EO difference is max(|0.8-0.7|, |0.4/3-0.2|) = 0.1.
BASE = {"A": 0.25, "B": 0.5}
TRUE_TPR = {"A": 0.8, "B": 0.7}
TRUE_FPR = {"A": 0.4 / 3, "B": 0.2}


def sample_population(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    group = np.where(rng.random(n) < 0.5, "A", "B")
    in_a = group == "A"
    y = (rng.random(n) < np.where(in_a, BASE["A"], BASE["B"])).astype(np.int64)
    rate = np.where(
        y == 1,
        np.where(in_a, TRUE_TPR["A"], TRUE_TPR["B"]),
        np.where(in_a, TRUE_FPR["A"], TRUE_FPR["B"]),
    )
    selected = rng.random(n) < rate
    return y, np.where(selected, 0.75, 0.25), group


def tiny() -> dict[str, Any]:
    """Twelve rows, worked by hand below; p == threshold counts as selected."""
    return {
        # group a: y 1 1 1 0 0 0, decisions 1 1 0 1 0 0 -> selection 3/6, TPR 2/3, FPR 1/3
        # group b: y 1 1 1 1 0 0, decisions 1 1 0 0 0 0 -> selection 2/6, TPR 2/4, FPR 0/2
        "y_true": [1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0],
        "probability": [0.9, 0.5, 0.4, 0.7, 0.2, 0.1, 0.8, 0.7, 0.3, 0.3, 0.2, 0.1],
        "groups": ["a"] * 6 + ["b"] * 6,
    }


def rates(report: FairnessReport, name: str) -> GroupRates:
    return next(group for group in report.groups if group.group == name)


def test_point_estimates_match_a_hand_computed_example() -> None:
    report = fairness_report(**tiny(), column="team", min_group_rows=1, resamples=50)
    a, b = rates(report, "a"), rates(report, "b")
    assert (a.rows, a.positives, b.rows, b.positives) == (6, 3, 6, 4)
    assert a.selection_rate.value == pytest.approx(1 / 2)
    assert a.tpr.value == pytest.approx(2 / 3)
    assert a.fpr.value == pytest.approx(1 / 3)
    assert b.selection_rate.value == pytest.approx(1 / 3)
    assert b.tpr.value == pytest.approx(1 / 2)
    assert b.fpr.value == 0.0
    assert report.demographic_parity_difference.value == pytest.approx(1 / 6)
    # TPR range 1/6, FPR range 1/3: the larger one wins
    assert report.equalized_odds_difference.value == pytest.approx(1 / 3)
    assert report.metrics() == pytest.approx({"dp_difference": 1 / 6, "eo_difference": 1 / 3})
    assert report.notes == ()


def test_intervals_cover_the_true_gap_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(2024)
    covered: dict[str, list[bool]] = {"dp": [], "eo": [], "selection_a": [], "tpr_b": []}
    for _ in range(300):
        y, p, group = sample_population(2000, rng)
        report = fairness_report(y, p, group, column="g", confidence=0.95, seed=int(rng.integers(2**31)))
        covered["dp"].append(report.demographic_parity_difference.contains(0.15))
        covered["eo"].append(report.equalized_odds_difference.contains(0.1))
        covered["selection_a"].append(rates(report, "A").selection_rate.contains(0.30))
        covered["tpr_b"].append(rates(report, "B").tpr.contains(TRUE_TPR["B"]))
    coverage = {name: float(np.mean(hits)) for name, hits in covered.items()}
    assert all(0.88 <= rate <= 0.99 for rate in coverage.values()), coverage


def test_intervals_shrink_with_the_square_root_of_the_rows() -> None:
    rng = np.random.default_rng(5)

    def mean_width(n: int) -> float:
        widths = []
        for _ in range(30):
            y, p, group = sample_population(n, rng)
            widths.append(fairness_report(y, p, group, column="g").demographic_parity_difference.width)
        return float(np.mean(widths))

    assert mean_width(500) / mean_width(8000) == pytest.approx(4.0, abs=0.5)


def test_intervals_match_a_row_level_bootstrap() -> None:
    y, p, group = sample_population(3000, np.random.default_rng(11))
    report = fairness_report(y, p, group, column="g", resamples=4000)
    selected = (p >= 0.5).astype(np.float64)
    in_a = (group == "A").astype(np.float64)
    columns = np.stack([selected * in_a, in_a, selected * (1 - in_a), 1 - in_a], axis=1)
    sums = np.concatenate(
        [counts @ columns for counts in iter_bootstrap_counts(len(y), 4000, np.random.default_rng(12))]
    )
    by_rows = percentile_interval(0.0, np.abs(sums[:, 0] / sums[:, 1] - sums[:, 2] / sums[:, 3]), 0.95)
    dp = report.demographic_parity_difference
    assert dp.low == pytest.approx(by_rows.low, abs=0.004)
    assert dp.high == pytest.approx(by_rows.high, abs=0.004)


def test_same_seed_same_report_and_another_seed_other_intervals() -> None:
    y, p, group = sample_population(1000, np.random.default_rng(3))
    first = fairness_report(y, p, group, column="g", seed=7).to_dict()
    assert fairness_report(y, p, group, column="g", seed=7).to_dict() == first
    other = fairness_report(y, p, group, column="g", seed=8).to_dict()
    assert other["demographic_parity_difference"]["value"] == first["demographic_parity_difference"]["value"]
    assert other["demographic_parity_difference"]["low"] != first["demographic_parity_difference"]["low"]


def test_a_group_without_positives_has_undefined_tpr_and_leaves_the_tpr_range() -> None:
    rng = np.random.default_rng(0)
    y, p, group = sample_population(600, rng)
    y = np.r_[y, np.zeros(50, dtype=np.int64)]
    p = np.r_[p, np.where(rng.random(50) < 0.6, 0.9, 0.1)]
    group = np.r_[group, ["C"] * 50]
    report = fairness_report(y, p, group, column="g")
    c = rates(report, "C")
    assert c.positives == 0
    assert all(math.isnan(x) for x in (c.tpr.value, c.tpr.low, c.tpr.high))
    assert not math.isnan(c.fpr.low)
    assert "group 'C' has no positive labels: TPR undefined, excluded from the TPR range" in report.notes
    tpr_range = abs(rates(report, "A").tpr.value - rates(report, "B").tpr.value)
    fprs = [rates(report, name).fpr.value for name in "ABC"]
    assert report.equalized_odds_difference.value == pytest.approx(max(tpr_range, max(fprs) - min(fprs)))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["groups"][2]["tpr"] == {"value": None, "low": None, "high": None, "confidence": 0.95}
    assert FairnessReport.from_dict(data).to_dict() == data


def test_small_groups_are_reported_but_left_out_of_the_differences() -> None:
    y, p, group = sample_population(1000, np.random.default_rng(1))
    y, p = np.r_[y, [1, 0] * 5], np.r_[p, [1.0] * 10]
    group = np.r_[group.astype(object), [None] * 5 + [float("nan")] * 5]
    report = fairness_report(y, p, group, column="g")
    missing = rates(report, "(missing)")
    assert (missing.rows, missing.selection_rate.value) == (10, 1.0)
    expected = abs(rates(report, "A").selection_rate.value - rates(report, "B").selection_rate.value)
    assert report.demographic_parity_difference.value == pytest.approx(expected)
    assert report.notes == (
        "group '(missing)' has 10 rows (< min_group_rows=30): reported, excluded from the differences",
    )


def test_group_values_become_sorted_strings() -> None:
    y, p, _ = sample_population(200, np.random.default_rng(2))
    codes = pd.Series(np.arange(200) % 2)
    report = fairness_report(y, p, codes, column="flag")
    assert [group.group for group in report.groups] == ["0", "1"]
    assert sum(group.rows for group in report.groups) == 200


def bad(**changes: Any) -> dict[str, Any]:
    arguments = {**tiny(), "column": "team", "min_group_rows": 1}
    return {**arguments, **changes}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (bad(probability=[0.5] * 11), r"one value per row; got shapes \(12,\), \(11,\) and \(12,\)"),
        (bad(y_true=[0, 1, 2] * 4), r"y_true must hold 0/1 labels only; got \[2.0\] \(4 rows\)"),
        (bad(y_true=[0, 1, math.nan] * 4), r"y_true must hold 0/1 labels only; got \[nan\]"),
        (bad(y_true=["no", "yes"] * 6), "y_true must be numeric"),
        (bad(probability=[0.5] * 11 + [1.2]), r"probability must lie in \[0, 1\]; got min 0.5 and max 1.2"),
        (bad(probability=[0.5] * 11 + [math.nan]), "probability has 1 NaN values"),
        (bad(y_true=[], probability=[], groups=[]), "no rows"),
        (
            bad(min_group_rows=7),
            r"column 'team' needs at least 2 groups with >= 7 rows to compare; group sizes: a=6, b=6",
        ),
        (bad(groups=["a"] * 12), r"group sizes: a=12"),
        (bad(resamples=19), "resamples must be at least 20 for a percentile interval, got 19"),
        (bad(confidence=1.0), "confidence must lie strictly between 0 and 1, got 1.0"),
        (bad(confidence=0), "confidence must lie strictly between 0 and 1, got 0"),
        (bad(threshold=1.5), r"threshold must lie in \[0, 1\], got 1.5"),
    ],
)
def test_bad_input_raises_a_clear_invalid_input_error(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fairness_report(**arguments)
