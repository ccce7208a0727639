"""Online serving: the HTTP app, the model cache, the prediction log and the server runners."""

from mlprod.serve.app import create_app
from mlprod.serve.model_cache import ModelCache
from mlprod.serve.prediction_log import PredictionLogWriter, read_prediction_log
from mlprod.serve.server import BackgroundServer, serve_forever

__all__ = [
    "BackgroundServer",
    "ModelCache",
    "PredictionLogWriter",
    "create_app",
    "read_prediction_log",
    "serve_forever",
]
