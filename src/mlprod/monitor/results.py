"""What monitoring finds: one check per detector and column, performance per metric, per window.

Every detector (drift, data quality, multivariate, performance drop) reports a ``Check`` with its
statistic, the threshold it was compared with and the verdict, so a reader never has to guess
why something alerted. Windows collect the checks and performance points of one time span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

CheckKind = Literal["drift", "quality", "performance"]
MULTIVARIATE = "*"  # the column of a check over all features at once
DATASET_DRIFT = "drift_share"  # the method of the window-level drift verdict (column "*")


@dataclass(frozen=True)
class Check:
    """One detector applied to one column (``"*"`` for a multivariate one) in one window.

    ``alert`` is the verdict: the statistic crossed the threshold in the bad direction
    (``higher_is_worse`` says which one that is) and, for a check with ``alpha``, the test's
    ``p_value`` is below it too (significance together with effect size). ``effect_size``,
    ``alpha`` and the sample sizes (values compared in the reference and the window) are recorded
    where a verdict used them, so a reader sees why it alerted or not.
    """

    column: str
    kind: CheckKind
    method: str
    statistic: float
    threshold: float
    alert: bool
    higher_is_worse: bool = True
    p_value: float | None = None
    detail: str = ""
    effect_size: float | None = None
    alpha: float | None = None
    reference_n: int | None = None
    window_n: int | None = None


@dataclass(frozen=True)
class PerformancePoint:
    """A metric in one window: estimated without labels (with a band), realized once labels joined."""

    metric: str
    reference: float
    estimated: float | None = None
    lower: float | None = None
    upper: float | None = None
    realized: float | None = None
    labelled_rows: int = 0


@dataclass(frozen=True)
class WindowResult:
    """Everything monitoring found in one window of predictions.

    ``partial``: the rows read do not cover the whole window (it started before the range read, or
    ends after it or after the newest logged prediction; a row-count window short of its count).
    ``name`` says which rows a window that is not a calendar span holds (``rows 0-999``, ``batch 7``);
    when those rows had no time, ``start`` is the epoch plus the window's index in µs and ``end`` one µs
    later: placeholders that keep windows apart.
    Its checks are computed and shown, but it raises no alerts: a few hours are not a week.
    """

    start: datetime
    end: datetime
    rows: int
    checks: list[Check] = field(default_factory=list)
    performance: list[PerformancePoint] = field(default_factory=list)
    partial: bool = False
    name: str = ""  # rows, chunk or column value of a window its span does not name

    @property
    def timeless(self) -> bool:
        """Its rows had no time: ``start`` and ``end`` are placeholders, ``name`` says which rows."""
        placeholder = self.start.year == 1970 and self.end - self.start <= timedelta(microseconds=1)
        return bool(self.name) and placeholder

    @property
    def alerts(self) -> list[Check]:
        return [c for c in self.checks if c.alert]


@dataclass(frozen=True)
class MonitorResult:
    """A model version's windows, in time order."""

    model: str
    version: int
    by: str
    windows: list[WindowResult]
