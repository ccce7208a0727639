"""A model version loaded in memory, ready to predict from rows, columns or a frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlprod.lazy import lazy_module
from mlprod.models.flavors import Predictor
from mlprod.models.signature import Signature

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")


class LoadedModel:
    """A predictor plus the encoder of its signature. Thread-safe for prediction."""

    def __init__(
        self, model: str, version: int, predictor: Predictor, signature: Signature, *, format: str
    ) -> None:
        self.model = model
        self.version = version
        self.predictor = predictor
        self.signature = signature
        self.format = format
        self.encoder = signature.encoder()

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for an already encoded float64 matrix."""
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return self.predictor.predict_proba(matrix)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.predict_matrix(self.encoder.encode_rows(rows))

    def predict_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return self.predict_matrix(self.encoder.encode_columns(columns))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_matrix(self.encoder.encode_frame(frame))

    def __repr__(self) -> str:
        return f"LoadedModel({self.model!r}, version={self.version}, format={self.format!r})"
