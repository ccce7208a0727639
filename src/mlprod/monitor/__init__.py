"""Monitoring of served models."""

from mlprod.monitor.prediction_summary import PredictionSummary, summarize_predictions

__all__ = ["PredictionSummary", "summarize_predictions"]
