"""XGBoost models in XGBoost's own Universal Binary JSON format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlprod.errors import ModelFormatError
from mlprod.lazy import lazy_module
from mlprod.models.flavors.base import Predictor

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


@dataclass
class XGBoostPredictor:
    native: Any  # xgboost.Booster

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.native.inplace_predict(matrix), dtype=np.float64)


class XGBoostUBJ:
    name = "xgboost-ubj"

    def accepts(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "xgboost"

    def serialize(self, model: Any) -> bytes:
        import xgboost as xgb

        booster = model.get_booster() if isinstance(model, xgb.XGBModel) else model
        if not isinstance(booster, xgb.Booster):
            raise ModelFormatError(f"{type(model).__qualname__} is not a fitted XGBoost model")
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        if objective != "binary:logistic":
            raise ModelFormatError(
                f"mlprod serves binary classifiers with probabilities; this XGBoost model's objective is "
                f"{objective!r} (use binary:logistic)"
            )
        return bytes(booster.save_raw("ubj"))

    def load(self, data: bytes) -> XGBoostPredictor:
        import xgboost as xgb

        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgb.core.XGBoostError as exc:
            raise ModelFormatError(f"cannot load XGBoost UBJ model: {exc}") from exc
        booster.set_param({"nthread": 1})
        return XGBoostPredictor(booster)

    def to_onnx(self, predictor: Predictor, n_features: int) -> bytes:
        import onnxmltools
        import xgboost as xgb
        from onnxmltools.convert.common.data_types import FloatTensorType

        # The converter reads the objective and the class count from a fitted sklearn wrapper.
        wrapper = xgb.XGBClassifier()
        wrapper._Booster = predictor.native
        wrapper.n_classes_ = 2
        wrapper.objective = "binary:logistic"
        graph = onnxmltools.convert_xgboost(
            wrapper, initial_types=[("input", FloatTensorType([None, n_features]))], target_opset=15
        )
        return bytes(graph.SerializeToString())
