"""Versioned datasets."""

from mlprod.data.datasets import DatasetStore, DatasetVersion

__all__ = ["DatasetStore", "DatasetVersion"]
