"""The contract every model format (flavor) fulfils, so the registry and the server need not care.

A flavor turns a fitted model into bytes and back, and never through pickle: loading must not be
able to run code. Loaded bytes become a ``Predictor``: one method, positive-class probabilities
from the encoded float64 matrix the model was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


SMALL_BATCH = 1000  # below this many rows one thread is faster than a thread pool


class Predictor(Protocol):
    """A loaded model: probabilities of the positive class, shape ``(n,)``."""

    native: Any

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray: ...


class Flavor(Protocol):
    """One safe storage format."""

    name: str

    def accepts(self, model: Any) -> bool:
        """True when ``model`` is a fitted model this flavor can store."""
        ...

    def serialize(self, model: Any) -> bytes: ...

    def load(self, data: bytes) -> Predictor: ...

    def to_onnx(self, predictor: Predictor, n_features: int) -> bytes:
        """The same model as an ONNX graph with one float input ``input`` of ``n_features``."""
        ...
