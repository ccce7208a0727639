"""Quality metrics of a binary classifier's predicted probabilities.

Examples:
    >>> m = binary_classification_metrics([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.4])
    >>> m["auc"], m["accuracy"]
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


def binary_classification_metrics(
    y_true: Sequence[int] | np.ndarray, probability: Sequence[float] | np.ndarray, *, threshold: float = 0.5
) -> dict[str, float]:
    """AUC, accuracy, F1, log loss, Brier score and positive rate at ``threshold``."""
    from sklearn import metrics  # imported on use: scikit-learn takes ~1 s to import

    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probability, dtype=np.float64)
    if y.shape != p.shape:
        raise InvalidInputError(f"labels and probabilities differ in shape: {y.shape} vs {p.shape}")
    if len(np.unique(y)) < 2:
        raise InvalidInputError("AUC needs both classes among the labels; got only one")
    predicted = (p >= threshold).astype(np.int64)
    return {
        "auc": float(metrics.roc_auc_score(y, p)),
        "accuracy": float(metrics.accuracy_score(y, predicted)),
        "f1": float(metrics.f1_score(y, predicted, zero_division=0.0)),
        "log_loss": float(metrics.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(metrics.brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }
