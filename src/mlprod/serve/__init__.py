"""Online serving: the HTTP app, the prediction service, model pool, routing, the prediction log."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.serve.app import create_app
    from mlprod.serve.batch_predict import BatchResult, predict_file
    from mlprod.serve.label_join import join_labels
    from mlprod.serve.model_pool import ModelPool
    from mlprod.serve.prediction_log import PredictionLogWriter, read_prediction_log
    from mlprod.serve.route_store import RouteChange, RouteStore
    from mlprod.serve.routing import RoutePlan
    from mlprod.serve.server import BackgroundServer, listen, serve_forever, url_of
    from mlprod.serve.service import PredictionService, ServeOptions

__all__ = [
    "BackgroundServer",
    "BatchResult",
    "ModelPool",
    "PredictionLogWriter",
    "PredictionService",
    "RouteChange",
    "RoutePlan",
    "RouteStore",
    "ServeOptions",
    "create_app",
    "join_labels",
    "listen",
    "predict_file",
    "read_prediction_log",
    "serve_forever",
    "url_of",
]

__getattr__ = lazy_exports(__name__, __file__)
