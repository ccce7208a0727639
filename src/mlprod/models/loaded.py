"""A model version loaded in memory, ready to predict from rows, columns or a frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlprod.models.signature import Signature

if TYPE_CHECKING:
    import lightgbm as lgb


class LoadedModel:
    """A booster plus the encoder of its signature. Thread-safe for prediction."""

    def __init__(self, model: str, version: int, booster: lgb.Booster, signature: Signature) -> None:
        self.model = model
        self.version = version
        self.booster = booster
        self.signature = signature
        self.encoder = signature.encoder()

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for an already encoded float64 matrix."""
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)

    def predict_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.predict_matrix(self.encoder.encode_rows(rows))

    def predict_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        return self.predict_matrix(self.encoder.encode_columns(columns))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(self.encoder.encode_frame(frame)), dtype=np.float64)

    def __repr__(self) -> str:
        return f"LoadedModel({self.model!r}, version={self.version})"
