"""Safe model formats ("flavors"): how a model becomes bytes and comes back, never through pickle."""

from __future__ import annotations

from typing import Any

from mlprod.errors import ModelFormatError
from mlprod.models.flavors.base import Flavor, Predictor
from mlprod.models.flavors.lightgbm_text import LightGBMText
from mlprod.models.flavors.onnx_graph import ONNXGraph
from mlprod.models.flavors.sklearn_skops import TRUSTED_TYPES, SklearnSkops
from mlprod.models.flavors.xgboost_ubj import XGBoostUBJ

FLAVORS: dict[str, Flavor] = {f.name: f for f in (LightGBMText(), XGBoostUBJ(), SklearnSkops(), ONNXGraph())}
NATIVE_FORMATS = ("lightgbm-text", "xgboost-ubj", "sklearn-skops")


def flavor_for(model: Any) -> Flavor:
    """The flavor that stores ``model``; ``ModelFormatError`` naming the allowed ones otherwise."""
    for flavor in FLAVORS.values():
        if flavor.accepts(model):
            return flavor
    raise ModelFormatError(
        f"cannot store a {type(model).__module__}.{type(model).__qualname__} safely: supported formats are "
        f"{', '.join(NATIVE_FORMATS)} (LightGBM, XGBoost, or scikit-learn estimators via skops). "
        "mlprod never stores or loads pickles."
    )


def get_flavor(format_name: str) -> Flavor:
    if format_name not in FLAVORS:
        raise ModelFormatError(
            f"unknown model format {format_name!r}; this mlprod reads {', '.join(FLAVORS)}"
        )
    return FLAVORS[format_name]


__all__ = ["FLAVORS", "NATIVE_FORMATS", "TRUSTED_TYPES", "Flavor", "Predictor", "flavor_for", "get_flavor"]
