"""Quality metrics: how right a model's scores are, for classification and regression.

Classification metrics take 0/1 labels and positive-class probabilities; the threshold for the
hard-decision metrics (accuracy, F1) is 0.5 unless given. Expected calibration error (ECE) is the
row-weighted mean gap between predicted probability and observed rate over ``bins`` equal-width
probability bins. Every metric is also available by name through ``score_metric``, which the slice,
robustness and importance code use.

Examples:
    >>> q = classification_quality([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> q["auc"], q["accuracy"]
    (0.75, 0.75)
    >>> regression_quality([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["mae"]
    0.3333333333333333
    >>> expected_calibration_error([0, 1], [0.0, 1.0])
    0.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

CLASSIFICATION_METRICS = ("auc", "accuracy", "f1", "log_loss", "brier", "ece")
REGRESSION_METRICS = ("rmse", "mae", "r2")
_EPSILON = 1e-15

ArrayLike: TypeAlias = "Sequence[float] | np.ndarray"


def classification_quality(
    y_true: ArrayLike, probability: ArrayLike, *, threshold: float = 0.5
) -> dict[str, float]:
    """AUC, accuracy, F1, log loss, Brier score and ECE of positive-class probabilities."""
    y, p = _binary(y_true, probability)
    return {name: _CLASSIFICATION[name](y, p, threshold) for name in CLASSIFICATION_METRICS}


def regression_quality(y_true: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """RMSE, MAE and R² of numeric predictions."""
    y, yhat = _pair(y_true, predicted)
    error = yhat - y
    total = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": float("nan") if total == 0 else 1.0 - float(np.sum(error**2)) / total,
    }


def score_metric(name: str, y_true: ArrayLike, score: ArrayLike, *, threshold: float = 0.5) -> float:
    """One metric by name (any of ``CLASSIFICATION_METRICS`` or ``REGRESSION_METRICS``)."""
    if name in _CLASSIFICATION:
        y, p = _binary(y_true, score)
        return _CLASSIFICATION[name](y, p, threshold)
    if name in REGRESSION_METRICS:
        return regression_quality(y_true, score)[name]
    known = ", ".join((*CLASSIFICATION_METRICS, *REGRESSION_METRICS))
    raise InvalidInputError(f"unknown quality metric {name!r}; expected one of {known}")


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties count one half); NaN with one class."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def expected_calibration_error(y_true: ArrayLike, probability: ArrayLike, *, bins: int = 10) -> float:
    """Row-weighted mean |observed rate - mean probability| over equal-width probability bins."""
    y, p = _binary(y_true, probability)
    return _ece(y, p, bins)


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    rows = np.bincount(which, minlength=bins)
    gap = np.abs(
        np.bincount(which, weights=y, minlength=bins) - np.bincount(which, weights=p, minlength=bins)
    )
    return float(gap.sum() / max(rows.sum(), 1))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _f1(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    predicted = p >= threshold
    true_positives = float(np.sum(predicted & (y == 1)))
    denominator = float(predicted.sum() + y.sum())
    return 0.0 if denominator == 0 else 2 * true_positives / denominator


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    clipped = np.clip(p, _EPSILON, 1 - _EPSILON)
    return float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))


_CLASSIFICATION: dict[str, Callable[[np.ndarray, np.ndarray, float], float]] = {
    "auc": lambda y, p, t: auc(y, p),
    "accuracy": lambda y, p, t: float(np.mean((p >= t) == (y == 1))),
    "f1": _f1,
    "log_loss": lambda y, p, t: _log_loss(y, p),
    "brier": lambda y, p, t: float(np.mean((p - y) ** 2)),
    "ece": lambda y, p, t: _ece(y, p),
}


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InvalidInputError(
            f"labels and predictions must be 1-D of equal length, got {x.shape} and {y.shape}"
        )
    if len(x) == 0:
        raise InvalidInputError("no rows to score")
    if np.isnan(x).any() or np.isnan(y).any():
        raise InvalidInputError("labels and predictions must not contain NaN")
    return x, y


def _binary(y_true: ArrayLike, probability: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, p = _pair(y_true, probability)
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidInputError(
            f"classification labels must be 0/1, got {sorted(set(np.unique(y).tolist()))[:5]}"
        )
    if (p < 0).any() or (p > 1).any():
        raise InvalidInputError("probabilities must lie in [0, 1]")
    return y, p
