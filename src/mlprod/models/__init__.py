"""Training, the model registry and safe model formats."""

from mlprod.models.loaded import LoadedModel
from mlprod.models.registry import (
    AliasMove,
    ModelRef,
    ModelSummary,
    ModelVersion,
    Registry,
    parse_ref,
)
from mlprod.models.signature import FeatureEncoder, InputField, Signature
from mlprod.models.training import TrainedModel, train_classifier

__all__ = [
    "AliasMove",
    "FeatureEncoder",
    "InputField",
    "LoadedModel",
    "ModelRef",
    "ModelSummary",
    "ModelVersion",
    "Registry",
    "Signature",
    "TrainedModel",
    "parse_ref",
    "train_classifier",
]
