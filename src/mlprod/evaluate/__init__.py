"""Evaluation of model versions."""

from mlprod.models.metrics import binary_classification_metrics

__all__ = ["binary_classification_metrics"]
