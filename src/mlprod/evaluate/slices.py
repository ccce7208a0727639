"""Metrics per slice: per time window (degradation over time) and per value of chosen columns.

The worst slice is the one with the lowest metric among slices large enough to judge (at least
``min_rows`` rows and both classes present); a tiny slice with a bad score is reported but never
named worst, since a dozen rows can score anything.

Examples:
    >>> import numpy as np
    >>> y = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    >>> p = np.array([0.2, 0.8, 0.3, 0.7, 0.6, 0.4, 0.9, 0.1])
    >>> report = slice_report(y, p, columns={"airline": np.array(list("aaaabbbb"))}, min_rows=2)
    >>> [(s.value, s.metric) for s in report.by_column["airline"]]
    [('a', 1.0), ('b', 0.75)]
    >>> report.worst.column, report.worst.value
    ('airline', 'b')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlprod.errors import InvalidInputError
from mlprod.evaluate.json_numbers import json_safe, number
from mlprod.evaluate.quality import score_metric
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

PERIODS = ("day", "week", "month")
_NUMBERS = ("positive_rate", "metric", "accuracy")
MISSING = "(missing)"


@dataclass(frozen=True)
class SliceMetric:
    """One slice: which rows, how many, and the metric on them (NaN when undefined)."""

    column: str
    value: str
    rows: int
    positive_rate: float
    metric: float
    accuracy: float

    @property
    def judged(self) -> bool:
        return bool(np.isfinite(self.metric))


@dataclass(frozen=True)
class SliceReport:
    metric: str
    period: str
    min_rows: int
    by_time: tuple[SliceMetric, ...]
    by_column: dict[str, tuple[SliceMetric, ...]]
    worst: SliceMetric | None

    def find(self, column: str, value: str) -> SliceMetric | None:
        """The slice ``column=value`` (time slices are under the column ``"<period> of"``)."""
        slices = self.by_time if column == f"{self.period} of" else self.by_column.get(column, ())
        return next((s for s in slices if s.value == value), None)

    def worst_name(self) -> str:
        """The worst slice as ``column=value``, or "none" when no slice was large enough to judge."""
        return "none" if self.worst is None else f"{self.worst.column}={self.worst.value}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "period": self.period,
            "min_rows": self.min_rows,
            "by_time": [_plain(s) for s in self.by_time],
            "by_column": {c: [_plain(s) for s in slices] for c, slices in self.by_column.items()},
            "worst": None if self.worst is None else _plain(self.worst),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SliceReport:
        return cls(
            metric=data["metric"],
            period=data["period"],
            min_rows=data["min_rows"],
            by_time=tuple(_slice(s) for s in data["by_time"]),
            by_column={c: tuple(_slice(s) for s in slices) for c, slices in data["by_column"].items()},
            worst=None if data["worst"] is None else _slice(data["worst"]),
        )


def slice_report(
    y: np.ndarray,
    score: np.ndarray,
    *,
    times: np.ndarray | None = None,
    period: str = "week",
    columns: Mapping[str, np.ndarray] | None = None,
    metric: str = "auc",
    min_rows: int = 200,
) -> SliceReport:
    """The metric per ``period`` of ``times`` and per value of each of ``columns``; the worst slice."""
    if period not in PERIODS:
        raise InvalidInputError(f"slice period {period!r}: expected one of {', '.join(PERIODS)}")
    y, score = np.asarray(y), np.asarray(score)
    by_time: tuple[SliceMetric, ...] = ()
    if times is not None:
        by_time = _slices(f"{period} of", _window_labels(times, period), y, score, metric, min_rows)
    by_column = {
        name: _slices(name, _as_labels(values, name, len(y)), y, score, metric, min_rows)
        for name, values in (columns or {}).items()
    }
    candidates = [s for s in (*by_time, *(s for group in by_column.values() for s in group)) if s.judged]
    worst = min(candidates, key=lambda s: s.metric) if candidates else None
    return SliceReport(metric, period, min_rows, by_time, by_column, worst)


def _slices(
    column: str, labels: np.ndarray, y: np.ndarray, score: np.ndarray, metric: str, min_rows: int
) -> tuple[SliceMetric, ...]:
    values, which = np.unique(labels, return_inverse=True)
    result = []
    for index, value in enumerate(values):
        rows = which == index
        ys, ps = y[rows], score[rows]
        enough = int(rows.sum()) >= min_rows and 0 < ys.sum() < len(ys)
        result.append(
            SliceMetric(
                column=column,
                value=str(value),
                rows=int(rows.sum()),
                positive_rate=float(ys.mean()),
                metric=score_metric(metric, ys, ps) if enough else float("nan"),
                accuracy=score_metric("accuracy", ys, ps),
            )
        )
    return tuple(result)


def _as_labels(values: np.ndarray, name: str, n: int) -> np.ndarray:
    values = np.asarray(values, dtype=object)
    if len(values) != n:
        raise InvalidInputError(f"slice column {name!r} has {len(values)} values for {n} rows")
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values], dtype=bool)
    return np.array(
        [MISSING if gap else str(v) for v, gap in zip(values, missing, strict=True)], dtype=object
    )


def _window_labels(times: np.ndarray, period: str) -> np.ndarray:
    """The day, Monday of the ISO week, or month (``YYYY-MM``) each time falls in, as text."""
    days = np.asarray(times, dtype="datetime64[ns]").astype("datetime64[D]")
    if period == "week":
        days = days - (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    elif period == "month":
        return days.astype("datetime64[M]").astype(str)
    return days.astype(str)


def _plain(s: SliceMetric) -> dict[str, Any]:
    return {k: json_safe(v) for k, v in asdict(s).items()}


def _slice(data: Mapping[str, Any]) -> SliceMetric:
    values: dict[str, Any] = {k: number(v) if k in _NUMBERS else v for k, v in data.items()}
    return SliceMetric(**values)
