"""Measured coverage of the estimated-performance band: how often the realized value fell inside it.

A nominal 95 % band is a claim; coverage over windows whose labels have arrived checks it. The band
is estimated for all of a window's rows, so a window counts only once (nearly) all of them are
labelled (``min_labelled_share``): the realized value of a few early labels is another quantity.
Coverage well below 95 % says the relation between score and label moved since the reference
(concept shift), which a label-free estimate cannot see (``mlprod.monitor.performance``).

Examples:
    >>> from mlprod.monitor.results import PerformancePoint
    >>> points = [
    ...     PerformancePoint("accuracy", 0.8, estimated=0.8, lower=0.78, upper=0.82, realized=r)
    ...     for r in (0.79, 0.81, 0.85)
    ... ]
    >>> coverage = band_coverage(points)["accuracy"]
    >>> coverage.covered, coverage.windows, round(coverage.share, 3), round(coverage.mean_width, 3)
    (2, 3, 0.667, 0.04)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mlprod.errors import InvalidInputError
from mlprod.monitor.results import PerformancePoint, WindowResult


@dataclass(frozen=True)
class BandCoverage:
    """Windows of one metric with both a band and a realized value, and how many held it inside."""

    metric: str
    windows: int
    covered: int
    mean_width: float

    @property
    def share(self) -> float:
        """Covered windows over windows (NaN without any)."""
        return self.covered / self.windows if self.windows else math.nan

    def describe(self) -> str:
        """One line for people, e.g. ``accuracy: 24/26 windows (92 %) inside the band, mean width 0.031``."""
        if not self.windows:
            return f"{self.metric}: no labelled window with a band yet"
        return (
            f"{self.metric}: {self.covered}/{self.windows} windows ({self.share:.0%}) inside the band, "
            f"mean width {self.mean_width:.3g}"
        )


def band_coverage(
    results: Iterable[WindowResult] | Iterable[PerformancePoint],
    *,
    min_labelled_share: float = 0.95,
) -> dict[str, BandCoverage]:
    """Coverage per metric over windows (or bare points, taken as wholly labelled), in metric order met."""
    if not 0.0 <= min_labelled_share <= 1.0:
        raise InvalidInputError(f"min_labelled_share: expected a share in [0, 1], got {min_labelled_share}.")
    counts: dict[str, list[float]] = {}
    for item in results:
        points: Sequence[PerformancePoint] = item.performance if isinstance(item, WindowResult) else [item]
        labelled_enough = min_labelled_share * item.rows if isinstance(item, WindowResult) else 0
        for p in points:
            tally = counts.setdefault(p.metric, [0, 0, 0.0])
            lower, upper, realized = _finite(p.lower), _finite(p.upper), _finite(p.realized)
            if lower is None or upper is None or realized is None or p.labelled_rows < labelled_enough:
                continue
            tally[0] += 1
            tally[1] += lower <= realized <= upper
            tally[2] += upper - lower
    return {
        metric: BandCoverage(metric, int(n), int(inside), width / n if n else math.nan)
        for metric, (n, inside, width) in counts.items()
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
