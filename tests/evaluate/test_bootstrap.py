"""Row bootstrap counts, their chunked form, cell counts and percentile intervals."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.evaluate.bootstrap import (
    Interval,
    bootstrap_cell_counts,
    bootstrap_counts,
    iter_bootstrap_counts,
    percentile_interval,
)


def test_counts_are_row_draws_summing_to_n() -> None:
    counts = bootstrap_counts(50, 400, np.random.default_rng(0))
    assert counts.shape == (400, 50)
    assert (counts.sum(axis=1) == 50).all()
    # each row is drawn Binomial(50, 1/50) times: mean 1, variance 0.98
    assert counts.mean() == pytest.approx(1.0)
    assert counts.var() == pytest.approx(0.98, abs=0.05)


@pytest.mark.parametrize("n", [7, 1001])
def test_chunking_gives_the_same_counts_as_one_draw(n: int) -> None:
    whole = bootstrap_counts(n, 25, np.random.default_rng(42))
    blocks = list(iter_bootstrap_counts(n, 25, np.random.default_rng(42), max_elements=3 * n + 1))
    assert [len(block) for block in blocks] == [3] * 8 + [1]
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_a_different_seed_gives_different_counts() -> None:
    first = bootstrap_counts(100, 5, np.random.default_rng(1))
    second = bootstrap_counts(100, 5, np.random.default_rng(2))
    assert not np.array_equal(first, second)


def test_interval_of_a_mean_covers_the_true_mean_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(200):
        x = rng.normal(loc=3.0, scale=2.0, size=200)
        means = bootstrap_counts(len(x), 200, rng) @ x / len(x)
        covered.append(percentile_interval(float(x.mean()), means, 0.9).contains(3.0))
    assert 0.83 <= np.mean(covered) <= 0.96


def test_cell_counts_match_the_row_bootstrap_in_distribution() -> None:
    cells = np.repeat(np.arange(4), [10, 20, 30, 140])
    totals = np.bincount(cells)
    by_cell = bootstrap_cell_counts(totals, 4000, np.random.default_rng(3))
    rows = bootstrap_counts(len(cells), 4000, np.random.default_rng(4))
    by_row = np.stack([np.bincount(cells, weights=row, minlength=4) for row in rows])
    assert (by_cell.sum(axis=1) == 200).all()
    np.testing.assert_allclose(by_cell.mean(axis=0), totals, rtol=0.03)
    np.testing.assert_allclose(by_cell.std(axis=0), by_row.std(axis=0), rtol=0.06)


def test_percentile_interval_drops_undefined_replicates() -> None:
    replicates = np.r_[np.linspace(0.0, 1.0, 101), [math.nan] * 20]
    interval = percentile_interval(0.5, replicates, 0.9)
    assert interval.low == pytest.approx(0.05)
    assert interval.high == pytest.approx(0.95)


def test_percentile_interval_is_undefined_when_most_replicates_are() -> None:
    replicates = np.r_[np.linspace(0.0, 1.0, 10), [math.nan] * 11]
    interval = percentile_interval(0.5, replicates, 0.9)
    assert interval.value == 0.5
    assert math.isnan(interval.low)
    assert math.isnan(interval.high)
    assert not interval.contains(0.5)


def test_percentile_interval_of_an_undefined_point_is_undefined() -> None:
    interval = percentile_interval(math.nan, np.linspace(0.0, 1.0, 10), 0.95)
    assert all(math.isnan(x) for x in (interval.value, interval.low, interval.high))


def test_interval_round_trips_through_json_with_nan_as_null() -> None:
    interval = Interval.undefined(0.95, value=0.25)
    data = json.loads(json.dumps(interval.to_dict(), allow_nan=False))
    assert data == {"value": 0.25, "low": None, "high": None, "confidence": 0.95}
    assert Interval.from_dict(data).to_dict() == data
    defined = Interval(value=0.5, low=0.4, high=0.6, confidence=0.9)
    assert Interval.from_dict(defined.to_dict()) == defined
    assert defined.width == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bootstrap_counts(0, 10, np.random.default_rng()), "cannot bootstrap 0 rows"),
        (lambda: bootstrap_counts(5, 0, np.random.default_rng()), "resamples must be at least 1, got 0"),
        (lambda: percentile_interval(0.0, np.ones(5), 1.0), "confidence must lie strictly between 0 and 1"),
        (lambda: percentile_interval(0.0, np.array([]), 0.9), "needs at least one bootstrap replicate"),
        (lambda: bootstrap_cell_counts(np.array([3, -1]), 5, np.random.default_rng()), "counts >= 0"),
    ],
)
def test_bad_arguments_raise_invalid_input(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()
