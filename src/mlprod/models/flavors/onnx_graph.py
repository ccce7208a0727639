"""ONNX graphs run by onnxruntime: an export format, never the first one a model is stored in."""

from __future__ import annotations

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
class ONNXPredictor:
    native: Any  # onnxruntime.InferenceSession

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        outputs = self.native.run(None, {"input": matrix.astype(np.float32, copy=False)})
        probabilities = np.asarray(outputs[-1], dtype=np.float64)
        return probabilities[:, 1] if probabilities.ndim == 2 else probabilities


class ONNXGraph:
    name = "onnx"

    def accepts(self, model: Any) -> bool:
        return False  # ONNX is produced by export, with a parity check, not registered directly

    def serialize(self, model: Any) -> bytes:
        raise ModelFormatError("register the native model and export it to ONNX")

    def load(self, data: bytes) -> ONNXPredictor:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelFormatError(f"cannot load ONNX model: {exc}") from exc
        return ONNXPredictor(session)

    def to_onnx(self, predictor: Predictor, n_features: int) -> bytes:
        raise ModelFormatError("the model is already ONNX")
