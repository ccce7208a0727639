"""Robustness: how much a model's metric falls under the shifts production data really goes through.

A model scored once on a held-out set says nothing about next month's traffic, a feed that starts
dropping fields, noisier sensors or a new mix of customers. ``robustness_report`` re-scores the
model under each of these shifts, seeded and model-agnostic (``predict`` maps the encoded float64
matrix to scores), and reports each as a drop from its baseline:

- ``later_window``: rows split by ``times`` into ``windows`` chronological equal-count parts; the
  metric on the last part against the metric on the first (drift over time). Needs ``times``.
- ``missing_{pct}pct``: every input column loses ``missing_fraction`` of its values to NaN, chosen
  independently per column.
- ``noise_{scale}sd``: Gaussian noise with sd = ``noise_scale`` x the column's std is added to every
  numeric column (missing values stay missing).
- ``reweight:{column}``: for each categorical column, rows are resampled so every category (missing
  counted as one) is equally common, as when rare segments become frequent.

Predictions are assumed row-wise (a row's score depends on that row only), so the time and reweight
shifts reuse the baseline predictions: the whole report costs three ``predict`` calls.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> matrix = rng.normal(size=(400, 2))
    >>> y = (matrix[:, 0] > 0).astype(float)
    >>> report = robustness_report(
    ...     lambda m: 1 / (1 + np.exp(-np.nan_to_num(m[:, 0]))), matrix, y, names=["x0", "x1"],
    ...     categorical=[], noise_scale=1.0,
    ... )
    >>> report.baseline
    1.0
    >>> [s.name for s in report.shifts]
    ['missing_10pct', 'noise_1sd']
    >>> report.worst.name, report.worst_drop > 0.1
    ('noise_1sd', True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from mlprod.errors import InvalidInputError
from mlprod.evaluate.json_numbers import finite_or_none, number
from mlprod.evaluate.quality import CLASSIFICATION_METRICS, REGRESSION_METRICS, score_metric
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

Predict: TypeAlias = "Callable[[np.ndarray], np.ndarray]"

HIGHER_IS_BETTER = frozenset({"auc", "accuracy", "f1", "r2"})


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` means a better model (AUC yes, log loss no).

    Examples:
        >>> higher_is_better("auc"), higher_is_better("log_loss")
        (True, False)
    """
    return metric in HIGHER_IS_BETTER


def metric_drop(metric: str, baseline: float, value: float) -> float:
    """How much worse ``value`` is than ``baseline``: positive means worse, whatever the direction.

    Examples:
        >>> metric_drop("auc", 0.9, 0.8) > 0, metric_drop("log_loss", 0.3, 0.4) > 0
        (True, True)
    """
    return baseline - value if higher_is_better(metric) else value - baseline


@dataclass(frozen=True)
class ShiftResult:
    """The metric under one shift, next to the baseline it is compared with."""

    name: str
    description: str
    metric: str
    baseline: float
    value: float
    rows: int

    @property
    def drop(self) -> float:
        """Baseline minus value (value minus baseline for lower-is-better metrics); NaN if undefined."""
        return metric_drop(self.metric, self.baseline, self.value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (NaN written as ``None``); ``from_dict`` reads it back."""
        return {
            "name": self.name,
            "description": self.description,
            "metric": self.metric,
            "baseline": finite_or_none(self.baseline),
            "value": finite_or_none(self.value),
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShiftResult:
        """Read the form written by ``to_dict``."""
        try:
            return cls(
                name=str(data["name"]),
                description=str(data["description"]),
                metric=str(data["metric"]),
                baseline=number(data["baseline"]),
                value=number(data["value"]),
                rows=int(data["rows"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"shift result {dict(data)!r} does not validate ({exc!r}); "
                "expected keys name, description, metric, baseline, value, rows"
            ) from exc


@dataclass(frozen=True)
class RobustnessReport:
    """The metric on unshifted rows and under each shift."""

    metric: str
    baseline: float
    shifts: tuple[ShiftResult, ...]

    @property
    def worst(self) -> ShiftResult | None:
        """The shift with the largest defined drop, or ``None`` if no shift has one."""
        defined = [s for s in self.shifts if math.isfinite(s.drop)]
        return max(defined, key=lambda s: s.drop) if defined else None

    @property
    def worst_drop(self) -> float:
        """The largest drop among shifts whose metric is defined (0.0 when none is)."""
        worst = self.worst
        return 0.0 if worst is None else worst.drop

    def shift(self, name: str) -> ShiftResult:
        """The result of the shift called ``name``."""
        for result in self.shifts:
            if result.name == name:
                return result
        known = ", ".join(s.name for s in self.shifts)
        raise InvalidInputError(f"no shift named {name!r} in this report; it has: {known}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form; ``from_dict`` reads it back.

        Examples:
            >>> shift = ShiftResult("noise_0.5sd", "noise", "auc", 0.9, 0.8, 10)
            >>> report = RobustnessReport("auc", 0.9, (shift,))
            >>> RobustnessReport.from_dict(report.to_dict()) == report
            True
        """
        return {
            "metric": self.metric,
            "baseline": finite_or_none(self.baseline),
            "shifts": [s.to_dict() for s in self.shifts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RobustnessReport:
        """Read the form written by ``to_dict``; raise ``InvalidInputError`` when it does not fit."""
        try:
            return cls(
                metric=str(data["metric"]),
                baseline=number(data["baseline"]),
                shifts=tuple(ShiftResult.from_dict(s) for s in data["shifts"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(
                f"robustness report does not validate ({exc!r}); expected keys metric, baseline, shifts"
            ) from exc


def robustness_report(
    predict: Predict,
    matrix: np.ndarray,
    y: np.ndarray,
    *,
    names: Sequence[str],
    categorical: Sequence[int],
    times: np.ndarray | None = None,
    metric: str = "auc",
    missing_fraction: float = 0.1,
    noise_scale: float = 0.5,
    windows: int = 4,
    seed: int = 0,
) -> RobustnessReport:
    """Score ``predict`` on ``matrix`` unshifted and under each realistic shift (see the module doc).

    ``matrix`` is the encoded float64 input matrix (one column per model input, categorical columns
    as integer codes, NaN for missing), ``names`` its column names, ``categorical`` the indices of
    its categorical columns, ``times`` one datetime64 per row (NaT rows are left out of the time
    shift). A shift whose metric is undefined (one class only, say) gets value NaN, says so in its
    description and does not count towards ``worst_drop``.
    """
    check_metric(metric)
    x, labels = check_matrix(matrix, y, names=names)
    columns = _check_categorical(categorical, x.shape[1])
    if not 0.0 <= missing_fraction < 1.0:
        raise InvalidInputError(f"missing_fraction must be in [0, 1), got {missing_fraction}")
    if not noise_scale >= 0.0:
        raise InvalidInputError(f"noise_scale must be >= 0, got {noise_scale}")
    if windows < 2:
        raise InvalidInputError(f"windows must be at least 2 (first and last), got {windows}")
    stamps = None if times is None else _check_times(times, len(labels))

    streams = np.random.SeedSequence(seed).spawn(2 + len(columns))
    scores = call_predict(predict, x)
    baseline = _score(metric, labels, scores)
    shifts: list[ShiftResult] = []
    if stamps is not None:
        shifts.append(_later_window(metric, labels, scores, stamps, windows))
    shifts.append(
        _missing(predict, metric, baseline, x, labels, missing_fraction, np.random.default_rng(streams[0]))
    )
    noise_rng = np.random.default_rng(streams[1])
    shifts.append(_noise(predict, metric, baseline, x, labels, columns, names, noise_scale, noise_rng))
    for column, stream in zip(columns, streams[2:], strict=True):
        shifts.append(
            _reweight(
                metric, baseline, labels, scores, x[:, column], names[column], np.random.default_rng(stream)
            )
        )
    return RobustnessReport(metric=metric, baseline=baseline, shifts=tuple(shifts))


def reweight_rows(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices, drawn with replacement, that make every category of ``codes`` equally common.

    Each row's weight is 1 / (rows sharing its category); NaN counts as one more category.

    Examples:
        >>> codes = np.array([0.0] * 9 + [1.0])
        >>> picked = reweight_rows(codes, np.random.default_rng(0))
        >>> len(picked), 3 < int((codes[picked] == 1).sum()) < 8
        (10, True)
    """
    groups = category_groups(codes)
    counts = np.bincount(groups)
    weights = 1.0 / counts[groups]
    return np.asarray(rng.choice(len(codes), size=len(codes), replace=True, p=weights / weights.sum()))


def category_groups(codes: np.ndarray) -> np.ndarray:
    """A dense group number per row: one per distinct code, and one more for NaN."""
    missing = np.isnan(codes)
    groups = np.empty(len(codes), dtype=np.int64)
    present, inverse = np.unique(codes[~missing], return_inverse=True)
    groups[~missing] = inverse
    groups[missing] = len(present)
    return groups


def check_metric(metric: str) -> None:
    """Raise ``InvalidInputError`` unless ``metric`` is a quality metric ``score_metric`` knows."""
    known = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
    if metric not in known:
        raise InvalidInputError(f"metric must be one of {', '.join(known)}; got {metric!r}")


def check_matrix(matrix: np.ndarray, y: np.ndarray, *, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The matrix as 2-D float64 and the labels as 1-D float64, or ``InvalidInputError``."""
    x = np.asarray(matrix, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInputError(f"matrix must be 2-D (rows x inputs), got shape {x.shape}")
    if labels.shape != (x.shape[0],):
        raise InvalidInputError(
            f"y must be 1-D with one label per matrix row: matrix has shape {x.shape}, y has {labels.shape}"
        )
    if x.shape[0] == 0:
        raise InvalidInputError("matrix has no rows to evaluate")
    if len(names) != x.shape[1]:
        raise InvalidInputError(
            f"names must name every matrix column: got {len(names)} names for {x.shape[1]} columns"
        )
    return x, labels


def call_predict(predict: Predict, matrix: np.ndarray) -> np.ndarray:
    """``predict(matrix)`` as 1-D float64, checked to give one score per row."""
    scores = np.asarray(predict(matrix), dtype=np.float64)
    if scores.shape != (matrix.shape[0],):
        raise InvalidInputError(
            f"predict must return one score per row: got shape {scores.shape} for {matrix.shape[0]} rows"
        )
    return scores


def _check_categorical(categorical: Sequence[int], width: int) -> list[int]:
    columns = [int(c) for c in categorical]
    bad = [c for c in columns if not 0 <= c < width]
    if bad:
        raise InvalidInputError(
            f"categorical column indices must be in [0, {width}) for a {width}-column matrix, got {bad}"
        )
    return list(dict.fromkeys(columns))


def _check_times(times: np.ndarray, rows: int) -> np.ndarray:
    try:
        stamps = np.asarray(times).astype("datetime64[ns]")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"times must be datetime64 values, one per row ({exc})") from exc
    if stamps.shape != (rows,):
        raise InvalidInputError(
            f"times must be 1-D with one value per row ({rows}), got shape {stamps.shape}"
        )
    return stamps


def _score(metric: str, y: np.ndarray, scores: np.ndarray) -> float:
    return float("nan") if len(y) == 0 else score_metric(metric, y, scores)


def _result(
    name: str, description: str, metric: str, baseline: float, value: float, rows: int
) -> ShiftResult:
    if not math.isfinite(value):
        description += f"; {metric} is undefined on these rows (e.g. only one class), so it is not counted"
    return ShiftResult(name, description, metric, baseline, value, rows)


def _later_window(
    metric: str, y: np.ndarray, scores: np.ndarray, stamps: np.ndarray, windows: int
) -> ShiftResult:
    dated = np.flatnonzero(~np.isnat(stamps))
    order = dated[np.argsort(stamps[dated], kind="stable")]
    parts = np.array_split(order, windows)
    first, last = parts[0], parts[-1]
    description = (
        f"the last of {windows} chronological windows ({_span(stamps[last])}) "
        f"against the first ({_span(stamps[first])})"
    )
    baseline = _score(metric, y[first], scores[first])
    if not math.isfinite(baseline):
        description += f"; {metric} is undefined on the first window"
    return _result(
        "later_window", description, metric, baseline, _score(metric, y[last], scores[last]), len(last)
    )


def _span(stamps: np.ndarray) -> str:
    if len(stamps) == 0:
        return "no rows"
    low, high = np.datetime_as_string(np.array([stamps.min(), stamps.max()]), unit="D")
    return f"{low} to {high}"


def _missing(
    predict: Predict,
    metric: str,
    baseline: float,
    x: np.ndarray,
    y: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
) -> ShiftResult:
    rows, width = x.shape
    hidden = round(fraction * rows)
    shifted = x.copy()
    if hidden:
        picked = np.argpartition(rng.random((rows, width)), hidden - 1, axis=0)[:hidden]
        shifted[picked, np.arange(width)] = np.nan
    value = _score(metric, y, call_predict(predict, shifted))
    name = f"missing_{fraction * 100:g}pct"
    description = f"{fraction * 100:g}% of every input's values set missing at random"
    return _result(name, description, metric, baseline, value, rows)


def _noise(
    predict: Predict,
    metric: str,
    baseline: float,
    x: np.ndarray,
    y: np.ndarray,
    categorical: list[int],
    names: Sequence[str],
    scale: float,
    rng: np.random.Generator,
) -> ShiftResult:
    numeric = np.array([c for c in range(x.shape[1]) if c not in set(categorical)], dtype=np.int64)
    shifted = x.copy()
    if len(numeric):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column gets no noise
            spread = np.nan_to_num(np.nanstd(x[:, numeric], axis=0))
        shifted[:, numeric] += rng.normal(size=(len(x), len(numeric))) * (scale * spread)
    value = _score(metric, y, call_predict(predict, shifted))
    inputs = ", ".join(names[c] for c in numeric) or "none"
    description = f"Gaussian noise of {scale:g} x each numeric input's std added (inputs: {inputs})"
    return _result(f"noise_{scale:g}sd", description, metric, baseline, value, len(x))


def _reweight(
    metric: str,
    baseline: float,
    y: np.ndarray,
    scores: np.ndarray,
    codes: np.ndarray,
    name: str,
    rng: np.random.Generator,
) -> ShiftResult:
    picked = reweight_rows(codes, rng)
    categories = int(category_groups(codes).max()) + 1
    description = (
        f"rows resampled so each of the {categories} categories of {name} "
        "(missing counted as one) is equally common"
    )
    return _result(
        f"reweight:{name}",
        description,
        metric,
        baseline,
        _score(metric, y[picked], scores[picked]),
        len(picked),
    )
