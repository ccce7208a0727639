"""Evaluation of model versions."""

from mlprod.evaluate.metrics import binary_classification_metrics

__all__ = ["binary_classification_metrics"]
