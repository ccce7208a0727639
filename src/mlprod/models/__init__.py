"""Training runs, the model registry and safe model formats."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.models.estimators import EstimatorSpec
    from mlprod.models.loaded import LoadedModel
    from mlprod.models.metrics import binary_classification_metrics
    from mlprod.models.registry import (
        AliasMove,
        MetricFilter,
        ModelExport,
        ModelRef,
        ModelSummary,
        ModelVersion,
        Registry,
        VersionSummary,
        parse_metric_filter,
        parse_ref,
    )
    from mlprod.models.runs import RunRecord, RunResult, get_run, list_runs, run_training
    from mlprod.models.signature import FeatureEncoder, InputField, Signature
    from mlprod.models.training import TrainedModel, train_classifier
    from mlprod.models.training_spec import TrainingSpec, build_frame

__all__ = [
    "AliasMove",
    "EstimatorSpec",
    "FeatureEncoder",
    "InputField",
    "LoadedModel",
    "MetricFilter",
    "ModelExport",
    "ModelRef",
    "ModelSummary",
    "ModelVersion",
    "Registry",
    "RunRecord",
    "RunResult",
    "Signature",
    "TrainedModel",
    "TrainingSpec",
    "VersionSummary",
    "binary_classification_metrics",
    "build_frame",
    "get_run",
    "list_runs",
    "parse_metric_filter",
    "parse_ref",
    "run_training",
    "train_classifier",
]

__getattr__ = lazy_exports(__name__, __file__)
