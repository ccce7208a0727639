"""scikit-learn estimators through skops, which loads only types it is told to trust.

skops trusts scikit-learn's own estimators; the few internal types it does not trust by default are
listed here, explicitly. Anything else (a user-defined class, a function inside a transformer) is
refused when storing, and again when loading.
"""

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

TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.tree._tree.Tree",
    "collections.OrderedDict",
    "numpy.dtype",
)


@dataclass
class SklearnPredictor:
    native: Any  # a fitted scikit-learn estimator

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.native.predict_proba(matrix)[:, 1], dtype=np.float64)


class SklearnSkops:
    name = "sklearn-skops"

    def accepts(self, model: Any) -> bool:
        return type(model).__module__.split(".")[0] == "sklearn"

    def serialize(self, model: Any) -> bytes:
        import skops.io as sio

        if not hasattr(model, "predict_proba"):
            raise ModelFormatError(
                f"{type(model).__qualname__} has no predict_proba; mlprod serves probabilities"
            )
        classes = getattr(model, "classes_", None)
        if classes is None or len(classes) != 2:
            raise ModelFormatError(
                f"mlprod serves fitted binary classifiers; this {type(model).__qualname__} has classes "
                f"{None if classes is None else list(classes)}"
            )
        try:
            data = bytes(sio.dumps(model))
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise ModelFormatError(f"skops cannot store {type(model).__qualname__}: {exc}") from exc
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
        if untrusted:
            raise ModelFormatError(
                f"{type(model).__qualname__} contains types mlprod does not trust to load: "
                f"{', '.join(untrusted)}; use scikit-learn's own estimators"
            )
        return data

    def load(self, data: bytes) -> SklearnPredictor:
        import skops.io as sio

        try:
            return SklearnPredictor(sio.loads(data, trusted=list(TRUSTED_TYPES)))
        except Exception as exc:  # skops raises its own UntrustedTypesFoundException and zip errors
            raise ModelFormatError(f"refused to load scikit-learn model: {exc}") from exc

    def to_onnx(self, predictor: Predictor, n_features: int) -> bytes:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        estimator = predictor.native
        graph = convert_sklearn(
            estimator,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            target_opset=15,
            options={id(estimator): {"zipmap": False}},
        )
        return bytes(graph.SerializeToString())
