"""Training a LightGBM binary classifier on a pandas frame through the model's own encoder."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlprod.errors import InvalidInputError
from mlprod.models.signature import Signature

if TYPE_CHECKING:
    import lightgbm as lgb

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 63,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "verbosity": -1,
    "num_threads": 2,
    "seed": 7,
    "deterministic": True,
}


@dataclass(frozen=True)
class TrainedModel:
    """A fitted booster with the signature it was trained under."""

    booster: lgb.Booster
    signature: Signature
    params: dict[str, Any]
    train_rows: int
    seconds: float


def train_classifier(
    frame: pd.DataFrame,
    *,
    label: str,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    num_boost_round: int = 200,
) -> TrainedModel:
    """Fit a LightGBM binary classifier predicting ``label`` (0/1) from the named inputs."""
    import lightgbm as lgb  # imported on use: it pulls in scikit-learn and SciPy (~1.5 s)

    if label not in frame.columns:
        raise InvalidInputError(f"training data has no label column {label!r}; it has {list(frame.columns)}")
    if len(frame) == 0:
        raise InvalidInputError("training data is empty")
    y = frame[label]
    if y.isna().any():
        raise InvalidInputError(f"label column {label!r} has {int(y.isna().sum())} missing values")
    classes = set(np.unique(y.to_numpy()).tolist())
    if not classes <= {0, 1}:
        raise InvalidInputError(f"label column {label!r} must be 0/1, got values {sorted(classes)[:5]}")
    if len(classes) < 2:
        raise InvalidInputError(f"label column {label!r} is constant ({classes.pop()!r}): nothing to learn")
    signature = Signature.infer(frame, numeric, categorical)
    merged = {**DEFAULT_PARAMS, **(params or {})}
    started = time.perf_counter()
    dataset = lgb.Dataset(
        signature.encoder().encode_frame(frame),
        label=y.to_numpy(dtype=np.float64),
        feature_name=signature.input_names,
        categorical_feature=signature.categorical_indices,
        free_raw_data=True,
    )
    booster = lgb.train(merged, dataset, num_boost_round=num_boost_round)
    return TrainedModel(
        booster=booster,
        signature=signature,
        params={**merged, "num_boost_round": num_boost_round},
        train_rows=len(frame),
        seconds=time.perf_counter() - started,
    )
