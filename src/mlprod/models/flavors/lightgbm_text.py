"""LightGBM boosters as LightGBM's own text model format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlprod.errors import ModelFormatError
from mlprod.lazy import lazy_module
from mlprod.models.flavors.base import SMALL_BATCH, Predictor

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


@dataclass
class LightGBMPredictor:
    native: Any  # lightgbm.Booster

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        threads = {"num_threads": 1} if len(matrix) < SMALL_BATCH else {}
        return np.asarray(self.native.predict(matrix, **threads), dtype=np.float64)


class LightGBMText:
    name = "lightgbm-text"

    def accepts(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "lightgbm"

    def serialize(self, model: Any) -> bytes:
        import lightgbm as lgb  # imported on use: it pulls in scikit-learn and SciPy

        booster = model.booster_ if isinstance(model, lgb.LGBMModel) else model
        if not isinstance(booster, lgb.Booster):
            raise ModelFormatError(f"{type(model).__qualname__} is not a fitted LightGBM model")
        text = booster.model_to_string()
        header = dict(line.split("=", 1) for line in text.split("\n\n", 1)[0].splitlines() if "=" in line)
        objective = header.get("objective", "")
        if not objective.startswith(("binary", "cross_entropy")) or header.get("num_class", "1") != "1":
            raise ModelFormatError(
                f"mlprod serves binary classifiers; this LightGBM model's objective is {objective!r}"
            )
        return text.encode("utf-8")

    def load(self, data: bytes) -> LightGBMPredictor:
        import lightgbm as lgb

        try:
            return LightGBMPredictor(lgb.Booster(model_str=data.decode("utf-8")))
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"cannot load LightGBM text model: {exc}") from exc

    def to_onnx(self, predictor: Predictor, n_features: int) -> bytes:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        graph = onnxmltools.convert_lightgbm(
            predictor.native,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            zipmap=False,
            target_opset=15,
        )
        return bytes(graph.SerializeToString())
