"""Group fairness of a binary classifier, with bootstrap confidence intervals.

A row is selected when its positive-class probability is at least ``threshold``. For each value of
a group column (None/NaN become the group ``"(missing)"``) the report gives the selection rate
P(ŷ=1), the true-positive rate P(ŷ=1 | y=1) and the false-positive rate P(ŷ=1 | y=0). Across groups
it gives the demographic parity difference (max - min selection rate) and the equalized-odds
difference (the larger of the TPR range and the FPR range, as fairlearn defines it).

Groups with fewer than ``min_group_rows`` rows are reported but left out of both differences; a
group with no positives (negatives) has an undefined TPR (FPR), reported as NaN and left out of that
range. ``notes`` says which exclusions happened.

Intervals come from a plain row bootstrap, not one stratified by group: group sizes vary from
sample to sample in the population too, and that variation belongs in the uncertainty. All the
statistics depend on the rows only through the counts per group x label x decision, so each
resample draws those counts directly (``bootstrap_cell_counts``), which is exact and fast. A
difference is a max - min, biased upward when the true rates are close, so its interval can sit
above the point estimate: read it as the plausible size of the gap, not as a test of "no gap".

Examples:
    >>> report = fairness_report(
    ...     [0, 1, 0, 1, 0, 1, 0, 1],
    ...     [0.2, 0.9, 0.6, 0.8, 0.1, 0.3, 0.2, 0.7],
    ...     ["a", "a", "a", "a", "b", "b", "b", "b"],
    ...     column="sex",
    ...     min_group_rows=1,
    ...     resamples=50,
    ... )
    >>> [(g.group, g.selection_rate.value, g.tpr.value, g.fpr.value) for g in report.groups]
    [('a', 0.75, 1.0, 0.5), ('b', 0.25, 0.5, 0.0)]
    >>> report.metrics()
    {'dp_difference': 0.5, 'eo_difference': 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from mlprod.errors import InvalidInputError
from mlprod.evaluate.bootstrap import Interval, bootstrap_cell_counts, percentile_interval
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")

MISSING_GROUP = "(missing)"
MIN_RESAMPLES = 20
_SHOWN_GROUPS = 20

ArrayLike: TypeAlias = "Sequence[Any] | np.ndarray | pd.Series"


@dataclass(frozen=True)
class GroupRates:
    """One group's size and decision rates, each with its bootstrap interval."""

    group: str
    rows: int
    positives: int
    selection_rate: Interval
    tpr: Interval
    fpr: Interval

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "rows": self.rows,
            "positives": self.positives,
            "selection_rate": self.selection_rate.to_dict(),
            "tpr": self.tpr.to_dict(),
            "fpr": self.fpr.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupRates:
        return cls(
            group=str(data["group"]),
            rows=int(data["rows"]),
            positives=int(data["positives"]),
            selection_rate=Interval.from_dict(data["selection_rate"]),
            tpr=Interval.from_dict(data["tpr"]),
            fpr=Interval.from_dict(data["fpr"]),
        )


@dataclass(frozen=True)
class FairnessReport:
    """Per-group rates and the two between-group differences for one group column."""

    column: str
    threshold: float
    groups: tuple[GroupRates, ...]
    demographic_parity_difference: Interval
    equalized_odds_difference: Interval
    resamples: int
    confidence: float
    notes: tuple[str, ...]

    def metrics(self) -> dict[str, float]:
        """The flat metric names used by reports and constraints."""
        return {
            "dp_difference": self.demographic_parity_difference.value,
            "eo_difference": self.equalized_odds_difference.value,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""
        return {
            "column": self.column,
            "threshold": self.threshold,
            "groups": [group.to_dict() for group in self.groups],
            "demographic_parity_difference": self.demographic_parity_difference.to_dict(),
            "equalized_odds_difference": self.equalized_odds_difference.to_dict(),
            "resamples": self.resamples,
            "confidence": self.confidence,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairnessReport:
        return cls(
            column=str(data["column"]),
            threshold=float(data["threshold"]),
            groups=tuple(GroupRates.from_dict(group) for group in data["groups"]),
            demographic_parity_difference=Interval.from_dict(data["demographic_parity_difference"]),
            equalized_odds_difference=Interval.from_dict(data["equalized_odds_difference"]),
            resamples=int(data["resamples"]),
            confidence=float(data["confidence"]),
            notes=tuple(str(note) for note in data["notes"]),
        )


def fairness_report(
    y_true: ArrayLike,
    probability: ArrayLike,
    groups: ArrayLike,
    *,
    column: str,
    threshold: float = 0.5,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    min_group_rows: int = 30,
) -> FairnessReport:
    """Selection rate, TPR and FPR per group, DP and EO differences, with bootstrap intervals.

    The same ``seed`` gives the same report.
    """
    _check_settings(threshold, resamples, confidence, min_group_rows)
    y, p, codes, names = _validated(y_true, probability, groups)
    cells = codes * 4 + y * 2 + (p >= threshold)
    totals = np.bincount(cells, minlength=4 * len(names))
    point = _Rates(totals[np.newaxis])
    rows, positives = point.rows[0], point.positives[0]
    eligible = rows >= min_group_rows
    if eligible.sum() < 2:
        raise InvalidInputError(
            f"column {column!r} needs at least 2 groups with >= {min_group_rows} rows to compare; "
            f"group sizes: {_sizes(names, rows)}. Lower min_group_rows or choose a column with "
            "larger groups"
        )
    replicates = _Rates(bootstrap_cell_counts(totals, resamples, np.random.default_rng(seed)))
    tpr_defined = eligible & (positives > 0)
    fpr_defined = eligible & (positives < rows)

    def interval(values: np.ndarray, replicated: np.ndarray) -> Interval:
        return percentile_interval(float(values[0]), replicated, confidence)

    group_rates = tuple(
        GroupRates(
            group=name,
            rows=int(rows[g]),
            positives=int(positives[g]),
            selection_rate=interval(point.selection[:, g], replicates.selection[:, g]),
            tpr=interval(point.tpr[:, g], replicates.tpr[:, g]),
            fpr=interval(point.fpr[:, g], replicates.fpr[:, g]),
        )
        for g, name in enumerate(names)
    )
    return FairnessReport(
        column=column,
        threshold=float(threshold),
        groups=group_rates,
        demographic_parity_difference=interval(
            _spread(point.selection, eligible), _spread(replicates.selection, eligible)
        ),
        equalized_odds_difference=interval(
            _equalized_odds(point, tpr_defined, fpr_defined),
            _equalized_odds(replicates, tpr_defined, fpr_defined),
        ),
        resamples=resamples,
        confidence=confidence,
        notes=_notes(names, rows, positives, eligible, tpr_defined, fpr_defined, min_group_rows),
    )


class _Rates:
    """Rates per resample and group from cell counts laid out as (resample, group, label, decision)."""

    def __init__(self, cell_counts: np.ndarray) -> None:
        counts = cell_counts.reshape(len(cell_counts), -1, 2, 2).astype(np.float64)
        self.rows = counts.sum(axis=(2, 3))
        self.positives = counts[:, :, 1, :].sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.selection = counts[:, :, :, 1].sum(axis=2) / self.rows
            self.tpr = counts[:, :, 1, 1] / self.positives
            self.fpr = counts[:, :, 0, 1] / (self.rows - self.positives)


def _spread(rates: np.ndarray, included: np.ndarray) -> np.ndarray:
    """Max - min over the included groups, per resample; NaN when a resample lacks one's rate."""
    if included.sum() < 2:
        return np.full(len(rates), math.nan)
    chosen = rates[:, included]
    return np.asarray(chosen.max(axis=1) - chosen.min(axis=1))


def _equalized_odds(rates: _Rates, tpr_defined: np.ndarray, fpr_defined: np.ndarray) -> np.ndarray:
    ranges = [
        _spread(values, defined)
        for values, defined in ((rates.tpr, tpr_defined), (rates.fpr, fpr_defined))
        if defined.sum() >= 2
    ]
    if not ranges:
        return np.full(len(rates.tpr), math.nan)
    return np.asarray(np.max(ranges, axis=0))


def _notes(
    names: list[str],
    rows: np.ndarray,
    positives: np.ndarray,
    eligible: np.ndarray,
    tpr_defined: np.ndarray,
    fpr_defined: np.ndarray,
    min_group_rows: int,
) -> tuple[str, ...]:
    notes = []
    for g, name in enumerate(names):
        if not eligible[g]:
            notes.append(
                f"group {name!r} has {int(rows[g])} rows (< min_group_rows={min_group_rows}): "
                "reported, excluded from the differences"
            )
        if positives[g] == 0:
            notes.append(f"group {name!r} has no positive labels: TPR undefined, excluded from the TPR range")
        if positives[g] == rows[g]:
            notes.append(f"group {name!r} has no negative labels: FPR undefined, excluded from the FPR range")
    for rate, defined in (("TPR", tpr_defined), ("FPR", fpr_defined)):
        if defined.sum() < 2:
            notes.append(f"fewer than 2 compared groups have a defined {rate}: its range is left out")
    if tpr_defined.sum() < 2 and fpr_defined.sum() < 2:
        notes.append("equalized-odds difference undefined: neither the TPR nor the FPR range is defined")
    return tuple(notes)


def _check_settings(threshold: float, resamples: int, confidence: float, min_group_rows: int) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInputError(f"threshold must lie in [0, 1], got {threshold}")
    if resamples < MIN_RESAMPLES:
        raise InvalidInputError(
            f"resamples must be at least {MIN_RESAMPLES} for a percentile interval, got {resamples}"
        )
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if min_group_rows < 1:
        raise InvalidInputError(f"min_group_rows must be at least 1, got {min_group_rows}")


def _validated(
    y_true: ArrayLike, probability: ArrayLike, groups: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """0/1 labels (int64), probabilities, group codes (int64) and the sorted group names."""
    y, p = _floats("y_true", y_true), _floats("probability", probability)
    keys = np.asarray(groups, dtype=object)
    if not (y.ndim == p.ndim == keys.ndim == 1) or not (len(y) == len(p) == len(keys)):
        raise InvalidInputError(
            "y_true, probability and groups must be 1-D with one value per row; got shapes "
            f"{y.shape}, {p.shape} and {keys.shape}"
        )
    if len(y) == 0:
        raise InvalidInputError("no rows: fairness needs labelled, scored rows")
    not_binary = ~np.isin(y, (0.0, 1.0))
    if not_binary.any():
        shown = np.unique(y[not_binary])[:5].tolist()
        raise InvalidInputError(f"y_true must hold 0/1 labels only; got {shown} ({not_binary.sum()} rows)")
    if np.isnan(p).any():
        raise InvalidInputError(f"probability has {int(np.isnan(p).sum())} NaN values; score every row")
    if (p < 0).any() or (p > 1).any():
        raise InvalidInputError(f"probability must lie in [0, 1]; got min {p.min():g} and max {p.max():g}")
    labels = np.where(pd.isna(keys), MISSING_GROUP, keys.astype(str))
    names, codes = np.unique(labels, return_inverse=True)
    return y.astype(np.int64), p, codes.astype(np.int64), [str(name) for name in names]


def _floats(name: str, values: ArrayLike) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numeric: {exc}") from exc


def _sizes(names: list[str], rows: np.ndarray) -> str:
    order = np.argsort(-rows, kind="stable")
    shown = ", ".join(f"{names[g]}={int(rows[g])}" for g in order[:_SHOWN_GROUPS])
    return shown + (f", … ({len(names) - _SHOWN_GROUPS} more)" if len(names) > _SHOWN_GROUPS else "")
