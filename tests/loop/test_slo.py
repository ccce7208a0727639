"""SLO checks: a rate within its limit is rarely stopped however often it is checked; a breach is caught."""

from __future__ import annotations

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.loop import Counts, SloCheck


def _first_breach(rate: float, *, runs: int, requests: int, every: int, seed: int) -> np.ndarray:
    """For each run, the request count at the first look that breached a 1 % limit (0: never)."""
    failures = np.random.default_rng(seed).random((runs, requests)) < rate
    totals = failures.cumsum(axis=1)
    check, found = SloCheck(), np.zeros(runs, dtype=np.int64)
    for n in range(every, requests + 1, every):
        for run in np.flatnonzero(found == 0):
            if check.look(Counts(n, int(totals[run, n - 1])), limit=0.01).breached:
                found[run] = n
    return found


def test_a_rate_at_its_limit_is_stopped_at_most_alpha_over_100_looks() -> None:
    assert np.mean(_first_breach(0.01, runs=200, requests=20_000, every=200, seed=0) > 0) <= 0.05


def test_a_tripled_error_rate_is_caught() -> None:
    found = _first_breach(0.03, runs=100, requests=20_000, every=200, seed=1)
    assert np.mean(found > 0) >= 0.95
    assert np.median(found[found > 0]) <= 3_000


def test_no_verdict_before_enough_requests() -> None:
    assert not SloCheck().look(Counts(100, 100), limit=0.01).breached  # 1 failure expected: too few


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SloCheck(alpha=1), r"alpha must be between 0 and 1 \(exclusive\), got 1"),
        (lambda: SloCheck(min_events=0), "min_events must be positive, got 0"),
        (
            lambda: SloCheck().look(Counts(10, 1), limit=0),
            r"an SLO limit is a rate between 0 and 1 \(exclusive\)",
        ),
    ],
)
def test_bad_parameters_are_refused(call: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()  # type: ignore[operator]
