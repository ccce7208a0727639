"""Row bootstrap and percentile confidence intervals, shared by fairness, importance and slices.

A bootstrap resample draws ``n`` rows with replacement; it is represented by how often each row was
drawn (a count vector summing to ``n``), so any weighted statistic — a mean, a rate, a metric with
sample weights — is computed from the counts without copying rows. ``bootstrap_counts`` returns all
resamples at once; ``iter_bootstrap_counts`` yields them in blocks that keep memory bounded and
produces exactly the same counts for the same generator state.

When a statistic depends on the rows only through counts per cell (for instance group x label x
decision), resampling rows gives cell counts distributed Multinomial(n, cell share);
``bootstrap_cell_counts`` draws those directly, which is exact and costs O(cells) per resample.

``percentile_interval`` is NaN-aware: a resample on which the statistic is undefined (a group with
no positives drawn, say) yields NaN and is dropped; if more than half are undefined, so is the
interval.

Examples:
    >>> rng = np.random.default_rng(0)
    >>> counts = bootstrap_counts(4, 3, rng)
    >>> counts.shape, counts.sum(axis=1).tolist()
    ((3, 4), [4, 4, 4])
    >>> interval = percentile_interval(0.5, np.linspace(0.0, 1.0, 101), 0.9)
    >>> round(interval.low, 3), round(interval.high, 3), interval.contains(0.5)
    (0.05, 0.95, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlprod.errors import InvalidInputError
from mlprod.evaluate.json_numbers import finite_or_none, number
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

DEFAULT_MAX_ELEMENTS = 1 << 22
"""Row counts held per block by ``iter_bootstrap_counts``: about 48 MB of indices and counts."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval; NaN fields mean undefined."""

    value: float
    low: float
    high: float
    confidence: float

    @classmethod
    def undefined(cls, confidence: float, value: float = math.nan) -> Interval:
        """An interval whose bounds (and by default value) are undefined."""
        return cls(value=value, low=math.nan, high=math.nan, confidence=confidence)

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, x: float) -> bool:
        """Whether ``low <= x <= high``; always False for an undefined interval."""
        return bool(self.low <= x <= self.high)

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready: NaN becomes None."""
        return {
            "value": finite_or_none(self.value),
            "low": finite_or_none(self.low),
            "high": finite_or_none(self.high),
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interval:
        return cls(
            value=number(data["value"]),
            low=number(data["low"]),
            high=number(data["high"]),
            confidence=float(data["confidence"]),
        )


def bootstrap_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, n)`` int64 counts: how often each of ``n`` rows is drawn in each resample."""
    _check_sizes(n, resamples)
    return _draw_counts(n, resamples, rng)


def iter_bootstrap_counts(
    n: int, resamples: int, rng: np.random.Generator, *, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Iterator[np.ndarray]:
    """Blocks of ``bootstrap_counts`` with at most ``max_elements`` counts each (at least one row).

    Concatenated, the blocks equal ``bootstrap_counts(n, resamples, rng)`` for the same generator
    state, so chunking changes memory use, not results.
    """
    _check_sizes(n, resamples)
    block = max(1, max_elements // n)
    for start in range(0, resamples, block):
        yield _draw_counts(n, min(block, resamples - start), rng)


def bootstrap_cell_counts(totals: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, cells)`` cell counts of row resamples, drawn as Multinomial(n, totals / n).

    Equivalent in distribution to resampling the ``n = totals.sum()`` rows and counting each cell.
    """
    counts = np.asarray(totals, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise InvalidInputError(f"cell totals must be a 1-D array of counts >= 0, got {counts!r}")
    n = int(counts.sum())
    _check_sizes(n, resamples)
    return rng.multinomial(n, counts / n, size=resamples).astype(np.int64)


def percentile_interval(point: float, replicates: np.ndarray, confidence: float) -> Interval:
    """Percentile bootstrap interval around ``point``; undefined (NaN) replicates are dropped.

    The bounds are NaN when ``point`` is NaN or when more than half of the replicates are undefined
    (the statistic is then too fragile for its resampling distribution to mean much).
    """
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    values = np.asarray(replicates, dtype=np.float64).ravel()
    if values.size == 0:
        raise InvalidInputError("percentile_interval needs at least one bootstrap replicate, got none")
    finite = values[np.isfinite(values)]
    if math.isnan(point) or 2 * finite.size < values.size:
        return Interval.undefined(confidence, value=float(point))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return Interval(value=float(point), low=float(low), high=float(high), confidence=confidence)


def _draw_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    # int32 indices draw twice as fast as int64; numpy keeps the unused half of each 64-bit word
    # in the generator, so successive blocks continue one stream exactly.
    dtype = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    indices = rng.integers(0, n, size=(resamples, n), dtype=dtype)
    counts = np.empty((resamples, n), dtype=np.int64)
    for row, drawn in enumerate(indices):
        counts[row] = np.bincount(drawn, minlength=n)
    return counts


def _check_sizes(n: int, resamples: int) -> None:
    if n < 1:
        raise InvalidInputError(f"cannot bootstrap {n} rows; need at least one row")
    if resamples < 1:
        raise InvalidInputError(f"resamples must be at least 1, got {resamples}")
